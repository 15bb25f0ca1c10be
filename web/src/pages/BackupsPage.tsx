// Backups (admins): is every change being copied off this server, and did the last rehearsal of
// losing it (`caretrail dr drill`) restore within the objectives? Warnings come from the server.
import type { ReactNode } from 'react';
import {
  Alert,
  Badge,
  Button,
  Code,
  Group,
  List,
  Loader,
  Stack,
  Table,
  Text,
  Title,
} from '@mantine/core';
import { IconAlertTriangle, IconRefresh, IconShieldCheck } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { api } from '../api';
import { ErrorAlert } from '../components/ErrorAlert';
import { formatDateTime } from '../format';
import type { BackupsStatus, DrillResult, ReplicaPart } from '../types';

const BACKUPS_KEY = ['admin', 'backups'] as const;

const STATE: Record<ReplicaPart['state'], { label: string; color: string }> = {
  ok: { label: 'Up to date', color: 'teal' },
  behind: { label: 'Behind', color: 'orange' },
  unreachable: { label: 'Unreachable', color: 'red' },
};

const REPLICATION_LABEL: Record<BackupsStatus['replication'], string> = {
  off: 'Off: nothing is copied off this server',
  ok: 'On: every part is up to date',
  degraded: 'Degraded: a part is behind or cannot be reached',
};

const seconds = (value: number, digits = 1) => `${value.toFixed(digits)} s`;
/** An objective as the operator gave it (`--rpo 1s`, `--rto 0.5m`). */
const objective = (value: number) => `${value.toLocaleString()} s`;
const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);
const when = (value: unknown, none: string) => {
  const iso = text(value);
  return iso && !Number.isNaN(Date.parse(iso)) ? formatDateTime(iso) : none;
};
const plural = (n: number, word: string) => `${n.toLocaleString()} ${word}${n === 1 ? '' : 's'}`;

/**
 * A two-column table: a header cell naming each row, then its value. Named by its caption, or by
 * the heading just above it (`labelledBy`).
 */
function FactsTable({
  caption,
  labelledBy,
  rows,
}: {
  caption?: string;
  labelledBy?: string;
  rows: [string, ReactNode][];
}) {
  return (
    <Table.ScrollContainer minWidth={480}>
      <Table verticalSpacing="xs" withTableBorder captionSide="top" aria-labelledby={labelledBy}>
        {caption && <Table.Caption>{caption}</Table.Caption>}
        <Table.Tbody>
          {rows.map(([label, value]) => (
            <Table.Tr key={label}>
              <Table.Th scope="row" w={200}>
                {label}
              </Table.Th>
              <Table.Td>{value}</Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

export function BackupsPage() {
  const status = useQuery({
    queryKey: BACKUPS_KEY,
    queryFn: ({ signal }) => api<BackupsStatus>('GET', '/admin/backups', { signal }),
    // Lag and errors change by the second: always ask again when the page is opened.
    staleTime: 0,
  });
  const data = status.data;

  return (
    <Stack gap="lg">
      <Group justify="space-between">
        <Title order={1} size="h2">
          Backups
        </Title>
        <Button
          variant="default"
          leftSection={<IconRefresh size={18} aria-hidden />}
          loading={status.isFetching}
          onClick={() => void status.refetch()}
        >
          Check again
        </Button>
      </Group>
      <Text c="dimmed" size="sm">
        Caretrail copies every change off this server to a replica (a folder on another disk or an
        S3 bucket), so losing the server loses little or nothing. A drill, run on the server with{' '}
        <Code>caretrail dr drill</Code>, rehearses that loss and measures what a restore recovers
        and how long it takes. These figures are the server&apos;s, for every clinic it serves.
      </Text>

      {status.isPending && <Loader role="status" aria-label="Loading the backup status" />}
      <ErrorAlert error={status.error} title="The backup status could not be loaded" />

      {data && (
        <>
          <StatusBanner data={data} />
          <Replication data={data} />
          <LastDrill drill={data.lastDrill} />
        </>
      )}
    </Stack>
  );
}

function StatusBanner({ data }: { data: BackupsStatus }) {
  if (data.warnings.length === 0)
    return (
      <Alert
        color="teal"
        icon={<IconShieldCheck aria-hidden />}
        title="Backups are in order"
        role="status"
      >
        Every part is up to date on the replica and the last drill passed within the last 30 days.
      </Alert>
    );
  const title =
    data.replication === 'off'
      ? 'Replication is off'
      : data.replication === 'degraded'
        ? 'Replication is behind or failing'
        : 'Backups need attention';
  return (
    <Alert color="red" icon={<IconAlertTriangle aria-hidden />} title={title} role="alert">
      <List size="sm" spacing={4}>
        {data.warnings.map((warning) => (
          <List.Item key={warning}>{warning}</List.Item>
        ))}
      </List>
    </Alert>
  );
}

function Replication({ data }: { data: BackupsStatus }) {
  const parts = Object.entries(data.parts);
  return (
    <Stack gap="sm" component="section" aria-labelledby="replication-heading">
      <Title order={2} size="h3" id="replication-heading">
        Replication
      </Title>
      <Text>
        Status: <strong>{REPLICATION_LABEL[data.replication]}</strong>
      </Text>
      {parts.length === 0 ? (
        <Text size="sm" c="dimmed">
          No part of Caretrail reports a replica.
        </Text>
      ) : (
        parts.map(([name, part]) => <Part key={name} name={name} part={part} />)
      )}
    </Stack>
  );
}

function Part({ name, part }: { name: string; part: ReplicaPart }) {
  const d = part.details;
  const state = STATE[part.state];
  const rows: [string, ReactNode][] = [
    [
      'State',
      <Badge key="state" color={state.color} variant="light">
        {state.label}
      </Badge>,
    ],
    [
      'Lag',
      part.lagSeconds === 0
        ? 'None: everything committed is on the replica'
        : seconds(part.lagSeconds),
    ],
  ];
  if ('mode' in d)
    rows.push([
      'Mode',
      d.mode === 'sync'
        ? 'Synchronous: a change is confirmed only once it is on the replica'
        : 'Asynchronous: changes are shipped within a second',
    ]);
  if ('destination' in d) rows.push(['Replica', text(d.destination) ?? '—']);
  if ('lastShipAt' in d) rows.push(['Last shipped', when(d.lastShipAt, 'Nothing yet')]);
  if ('lastSnapshotAt' in d)
    rows.push([
      'Last snapshot',
      `${when(d.lastSnapshotAt, 'None yet')}${typeof d.snapshotUploading === 'number' ? ' (a new one is uploading)' : ''}`,
    ]);
  if ('generation' in d) rows.push(['Generation', text(d.generation) ?? 'None yet']);
  if ('retentionDays' in d)
    rows.push([
      'Retention',
      typeof d.retentionDays === 'number'
        ? `${plural(d.retentionDays, 'day')} of history for point-in-time restore`
        : '—',
    ]);
  rows.push([
    'Last error',
    part.lastError === null
      ? 'None'
      : `${part.lastError}${text(d.lastErrorAt) ? ` (${when(d.lastErrorAt, '')})` : ''}`,
  ]);
  return (
    <Stack gap={4}>
      <Title order={3} size="h4" id={`part-${name}`}>
        Replica of the {name}
      </Title>
      <FactsTable labelledBy={`part-${name}`} rows={rows} />
    </Stack>
  );
}

function LastDrill({ drill }: { drill: DrillResult | null }) {
  return (
    <Stack gap="sm" component="section" aria-labelledby="drill-heading">
      <Title order={2} size="h3" id="drill-heading">
        Last disaster-recovery drill
      </Title>
      {drill === null ? (
        <Text size="sm">
          No drill has been run on this server. Ask your operator to run{' '}
          <Code>caretrail dr drill</Code>: it replicates a scratch server under load, kills it,
          restores from the replica alone and measures what was lost and how long it took.
        </Text>
      ) : (
        <DrillFigures drill={drill} />
      )}
    </Stack>
  );
}

function DrillFigures({ drill }: { drill: DrillResult }) {
  const missing = drill.missing.notes + drill.missing.documents;
  const rpoMet = drill.rpoSeconds <= drill.objectives.rpoSeconds;
  const rtoMet = drill.rtoSeconds <= drill.objectives.rtoSeconds;
  const rpoText =
    missing === 0
      ? 'None: every acknowledged write was restored'
      : `${plural(missing, 'acknowledged write')} missing (${plural(drill.missing.notes, 'note')}, ${plural(drill.missing.documents, 'upload')}); ${seconds(drill.rpoSeconds, 2)} of writes lost`;
  const rtoText = `${seconds(drill.rtoSeconds)} from the loss to a restored server answering (restore ${seconds(drill.restoreSeconds)})`;
  const verdict = (met: boolean) => (
    <Badge color={met ? 'teal' : 'red'} variant="light">
      {met ? 'Met' : 'Missed'}
    </Badge>
  );
  return (
    <Stack gap="sm">
      <Group gap="xs">
        <Badge color={drill.passed ? 'teal' : 'red'} size="lg">
          {drill.passed ? 'Passed' : 'Failed'}
        </Badge>
        <Text size="sm">
          {drill.passed ? 'Within the objectives' : 'An objective was missed or a check failed'},{' '}
          {formatDateTime(drill.startedAt)}
        </Text>
      </Group>

      <Table.ScrollContainer minWidth={560}>
        <Table verticalSpacing="xs" withTableBorder captionSide="top">
          <Table.Caption>Recovery figures of the last drill against their objectives</Table.Caption>
          <Table.Thead>
            <Table.Tr>
              <Table.Th scope="col">Measure</Table.Th>
              <Table.Th scope="col">Measured</Table.Th>
              <Table.Th scope="col">Objective</Table.Th>
              <Table.Th scope="col">Objective met</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            <Table.Tr>
              <Table.Th scope="row">Data lost (RPO)</Table.Th>
              <Table.Td>{rpoText}</Table.Td>
              <Table.Td>{objective(drill.objectives.rpoSeconds)}</Table.Td>
              <Table.Td>{verdict(rpoMet)}</Table.Td>
            </Table.Tr>
            <Table.Tr>
              <Table.Th scope="row">Time to recover (RTO)</Table.Th>
              <Table.Td>{rtoText}</Table.Td>
              <Table.Td>{objective(drill.objectives.rtoSeconds)}</Table.Td>
              <Table.Td>{verdict(rtoMet)}</Table.Td>
            </Table.Tr>
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>

      <FactsTable
        caption="How the last drill ran"
        rows={[
          ['Started', formatDateTime(drill.startedAt)],
          ['Engine', drill.engine === 'sqlite' ? 'SQLite' : 'PostgreSQL'],
          ['Replication mode', drill.mode === 'sync' ? 'Synchronous' : 'Asynchronous'],
          [
            'Load before the loss',
            `${plural(drill.acknowledged.notes, 'note')} and ${plural(drill.acknowledged.documents, 'upload')} acknowledged in ${seconds(drill.loadSeconds)}`,
          ],
          ['Restored to', drill.restoredTo ? formatDateTime(drill.restoredTo) : 'Unknown'],
          [
            'Audit trail',
            `${drill.audit.ok ? 'Verified' : 'Did not verify'}: ${drill.audit.message}`,
          ],
          [
            'Files',
            `${drill.files.ok.toLocaleString()} of ${plural(drill.files.checked, 'restored upload')} read back intact${drill.files.bad > 0 ? `; ${drill.files.bad.toLocaleString()} damaged` : ''}`,
          ],
        ]}
      />

      {drill.problems.length > 0 && (
        <Stack gap={4}>
          <Title order={3} size="h4">
            Problems found
          </Title>
          <List size="sm">
            {drill.problems.map((problem) => (
              <List.Item key={problem}>{problem}</List.Item>
            ))}
          </List>
        </Stack>
      )}
    </Stack>
  );
}
