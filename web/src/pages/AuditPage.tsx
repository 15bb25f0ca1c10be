// The audit trail (admins and auditors): chain verification, alerts, event search and CSV export.
import { useState } from 'react';
import type { SubmitEvent } from 'react';
import {
  Alert,
  Badge,
  Button,
  Group,
  Loader,
  Paper,
  Select,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import {
  IconAlertTriangle,
  IconDownload,
  IconRefresh,
  IconSearch,
  IconShieldCheck,
} from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { api, query } from '../api';
import { LoadMore, usePagedList } from '../paged';
import { ErrorAlert } from '../components/ErrorAlert';
import { formatDateTime, ROLE_LABEL } from '../format';
import type { Page } from '../types';

interface VerifyResult {
  ok: boolean;
  checked: number;
  firstBadSequence: number | null;
  reason: string | null;
  lastGoodCheckpoint: number | null;
}

interface AuditEvent {
  seq: number;
  id: string;
  occurredAt: string;
  action: string;
  type: string;
  outcome: string;
  actor: {
    userId: string | null;
    role: string | null;
    organizationId: string | null;
    ip: string | null;
    userAgent: string | null;
  };
  patientId: string | null;
  entity: { type: string; id: string | null; version: number | null } | null;
  purpose: string | null;
  requestId: string | null;
  detail: Record<string, unknown> | null;
  hash: string;
  chain: string;
}

interface AuditAlert {
  id: string;
  userId: string;
  rule: string;
  detail: Record<string, unknown>;
  createdAt: string;
}

const ACTION_LABEL: Record<string, string> = {
  C: 'Create',
  R: 'Read',
  U: 'Update',
  D: 'Delete',
  E: 'Execute',
};
const ACTION_OPTIONS = Object.entries(ACTION_LABEL).map(([value, label]) => ({ value, label }));

const OUTCOME_LABEL: Record<string, string> = {
  success: 'Success',
  failure: 'Failure',
  denied: 'Denied',
  error: 'Error',
};
const OUTCOME_COLOR: Record<string, string> = {
  success: 'teal',
  failure: 'orange',
  denied: 'red',
  error: 'red',
};
const OUTCOME_OPTIONS = Object.entries(OUTCOME_LABEL).map(([value, label]) => ({ value, label }));

/** The filters as typed; `from`/`to` are datetime-local values (the browser's time zone). */
interface FilterForm {
  patientId: string;
  actorId: string;
  action: string | null;
  outcome: string | null;
  type: string;
  from: string;
  to: string;
}

const EMPTY_FILTERS: FilterForm = {
  patientId: '',
  actorId: '',
  action: null,
  outcome: null,
  type: '',
  from: '',
  to: '',
};

/** The filters as the API takes them (search and CSV export alike). */
type Search = Partial<Record<'patientId' | 'actorId' | 'action' | 'outcome' | 'type', string>> & {
  from?: string;
  to?: string;
};

const isoOf = (local: string): string | undefined => {
  if (local === '') return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
};

function searchOf(form: FilterForm): Search {
  const trimmed = (value: string) => value.trim() || undefined;
  // Empty filters become undefined, which `query` leaves out: the API rejects empty strings.
  return {
    patientId: trimmed(form.patientId),
    actorId: trimmed(form.actorId),
    action: form.action ?? undefined,
    outcome: form.outcome ?? undefined,
    type: trimmed(form.type),
    from: isoOf(form.from),
    to: isoOf(form.to),
  };
}

export function AuditPage() {
  return (
    <Stack gap="lg">
      <Title order={1} size="h2">
        Audit trail
      </Title>
      <Verification />
      <RecentAlerts />
      <EventSearch />
    </Stack>
  );
}

function Verification() {
  const verify = useQuery({
    queryKey: ['audit', 'verify'],
    queryFn: ({ signal }) => api<VerifyResult>('GET', '/audit/verify', { signal }),
  });
  const result = verify.data;

  return (
    <Stack gap="xs">
      {verify.isPending && (
        <Group gap="xs">
          <Loader size="sm" aria-hidden />
          <Text>Verifying the audit trail…</Text>
        </Group>
      )}
      <ErrorAlert error={verify.error} title="The audit trail could not be verified" />
      {result &&
        (result.ok ? (
          <Alert
            color="teal"
            icon={<IconShieldCheck aria-hidden />}
            title={`Audit trail intact — ${result.checked.toLocaleString()} events checked`}
          >
            Every event&apos;s hash and chain were recomputed and every signed checkpoint matched.
            {verify.dataUpdatedAt > 0 &&
              ` Verified ${formatDateTime(new Date(verify.dataUpdatedAt).toISOString())}.`}
          </Alert>
        ) : (
          <Alert
            color="red"
            role="alert"
            icon={<IconAlertTriangle aria-hidden />}
            title={`Audit trail broken at event #${result.firstBadSequence ?? '?'}`}
          >
            <Stack gap={4}>
              {result.reason && <Text size="sm">{result.reason}.</Text>}
              <Text size="sm">
                {result.checked.toLocaleString()} events were checked.
                {result.lastGoodCheckpoint !== null &&
                  ` Events up to #${result.lastGoodCheckpoint} are covered by a signed checkpoint that still matches.`}
              </Text>
              <Text size="sm">
                The record of who did what may have been altered. Tell your Caretrail operator now,
                and keep a CSV export of the trail as it is.
              </Text>
            </Stack>
          </Alert>
        ))}
      <Group>
        <Button
          variant="default"
          leftSection={<IconRefresh size={18} aria-hidden />}
          loading={verify.isFetching}
          onClick={() => void verify.refetch()}
        >
          Verify again
        </Button>
      </Group>
    </Stack>
  );
}

const detailText = (value: unknown): string =>
  typeof value === 'string' || typeof value === 'number' ? String(value) : '—';

function alertSummary(alert: AuditAlert): { title: string; text: string } {
  const d = alert.detail;
  if (alert.rule === 'many_patients')
    return {
      title: 'Many patient records opened',
      text: `${detailText(d.distinctPatients)} different patients within ${detailText(d.windowMinutes)} minutes (threshold ${detailText(d.threshold)}).`,
    };
  if (alert.rule === 'break_glass')
    return {
      title: 'Break-glass access',
      text: `Patient ${detailText(d.patientId)}, until ${typeof d.expiresAt === 'string' ? formatDateTime(d.expiresAt) : '—'}. Reason given: “${detailText(d.reason)}”`,
    };
  return { title: alert.rule, text: JSON.stringify(d) };
}

const ALERTS_SHOWN = 10;

function RecentAlerts() {
  const alerts = useQuery({
    queryKey: ['audit', 'alerts'],
    queryFn: ({ signal }) =>
      api<Page<AuditAlert>>('GET', `/audit/alerts${query({ limit: ALERTS_SHOWN })}`, { signal }),
  });

  if (alerts.error) return <ErrorAlert error={alerts.error} title="Alerts could not be loaded" />;
  const items = alerts.data?.items ?? [];
  // Nothing to review is the usual case: the section stays out of the way.
  if (items.length === 0) return null;

  return (
    <Stack gap="xs">
      <Title order={2} size="h3">
        Recent alerts
      </Title>
      <Table.ScrollContainer minWidth={640}>
        <Table verticalSpacing="xs">
          <Table.Caption>
            {alerts.data?.nextCursor
              ? `The ${ALERTS_SHOWN} newest alerts`
              : 'Alerts raised for unusual access'}
          </Table.Caption>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>When</Table.Th>
              <Table.Th>Alert</Table.Th>
              <Table.Th>User id</Table.Th>
              <Table.Th>Details</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {items.map((alert) => {
              const { title, text } = alertSummary(alert);
              return (
                <Table.Tr key={alert.id}>
                  <Table.Td style={{ whiteSpace: 'nowrap' }}>
                    {formatDateTime(alert.createdAt)}
                  </Table.Td>
                  <Table.Td>
                    <Badge color="orange" variant="light">
                      {title}
                    </Badge>
                  </Table.Td>
                  <Table.Td>
                    <Id value={alert.userId} />
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm">{text}</Text>
                  </Table.Td>
                </Table.Tr>
              );
            })}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
    </Stack>
  );
}

function Id({ value }: { value: string | null }) {
  if (!value) return <Text c="dimmed">—</Text>;
  return (
    <Text size="xs" ff="monospace" style={{ wordBreak: 'break-all' }}>
      {value}
    </Text>
  );
}

function EventSearch() {
  const [form, setForm] = useState<FilterForm>(EMPTY_FILTERS);
  const [search, setSearch] = useState<Search>({});
  const [rangeProblem, setRangeProblem] = useState<string | null>(null);

  const events = usePagedList<AuditEvent>(['audit', 'events', search], '/audit', search);

  function set<K extends keyof FilterForm>(key: K, value: FilterForm[K]) {
    setForm((current) => ({ ...current, [key]: value }));
  }

  function submit(event: SubmitEvent<HTMLFormElement>) {
    event.preventDefault();
    const next = searchOf(form);
    if (next.from && next.to && next.from >= next.to) {
      setRangeProblem('Choose a "To" time after the "From" time.');
      return;
    }
    setRangeProblem(null);
    setSearch(next);
  }

  function clear() {
    setForm(EMPTY_FILTERS);
    setRangeProblem(null);
    setSearch({});
  }

  const rows = events.items;

  return (
    <Stack gap="sm">
      <Title order={2} size="h3">
        Search events
      </Title>
      <Paper withBorder p="md" component="form" onSubmit={submit} aria-label="Audit filters">
        <SimpleGrid cols={{ base: 1, sm: 2, lg: 4 }}>
          <TextInput
            label="Patient id"
            value={form.patientId}
            onChange={(event) => {
              set('patientId', event.currentTarget.value);
            }}
          />
          <TextInput
            label="Actor (user) id"
            value={form.actorId}
            onChange={(event) => {
              set('actorId', event.currentTarget.value);
            }}
          />
          <Select
            label="Action"
            placeholder="Any"
            clearable
            data={ACTION_OPTIONS}
            value={form.action}
            onChange={(value) => {
              set('action', value);
            }}
          />
          <Select
            label="Outcome"
            placeholder="Any"
            clearable
            data={OUTCOME_OPTIONS}
            value={form.outcome}
            onChange={(value) => {
              set('outcome', value);
            }}
          />
          <TextInput
            label="Event type"
            placeholder="e.g. patient.read"
            value={form.type}
            onChange={(event) => {
              set('type', event.currentTarget.value);
            }}
          />
          <TextInput
            label="From"
            type="datetime-local"
            value={form.from}
            onChange={(event) => {
              set('from', event.currentTarget.value);
            }}
          />
          <TextInput
            label="To"
            type="datetime-local"
            value={form.to}
            error={rangeProblem}
            onChange={(event) => {
              set('to', event.currentTarget.value);
            }}
          />
        </SimpleGrid>
        <Group mt="md" justify="space-between">
          <Group>
            <Button type="submit" leftSection={<IconSearch size={18} aria-hidden />}>
              Search
            </Button>
            <Button variant="default" onClick={clear}>
              Clear filters
            </Button>
          </Group>
          {/* A plain link: the session cookie authenticates the GET and the browser streams the
              file, however large. Only offered for filters the search accepted, so a rejected
              filter is never saved as an error "CSV". */}
          {!events.isError && (
            <Button
              component="a"
              href={`/api/v1/audit/export.csv${query(search)}`}
              download
              variant="default"
              leftSection={<IconDownload size={18} aria-hidden />}
            >
              Download CSV
            </Button>
          )}
        </Group>
      </Paper>

      <ErrorAlert error={events.error} title="The search did not work" />

      {events.isPending ? (
        <Loader role="status" aria-label="Loading audit events" />
      ) : rows.length === 0 && !events.isError ? (
        <Text>No events match these filters.</Text>
      ) : (
        <Table.ScrollContainer minWidth={1000}>
          <Table striped verticalSpacing="xs">
            <Table.Caption>Audit events, newest first</Table.Caption>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>When</Table.Th>
                <Table.Th>Action</Table.Th>
                <Table.Th>Type</Table.Th>
                <Table.Th>Outcome</Table.Th>
                <Table.Th>Actor</Table.Th>
                <Table.Th>Patient</Table.Th>
                <Table.Th>Entity</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {rows.map((event) => (
                <Table.Tr key={event.seq}>
                  <Table.Td style={{ whiteSpace: 'nowrap' }}>
                    {formatDateTime(event.occurredAt)}
                  </Table.Td>
                  <Table.Td>{ACTION_LABEL[event.action] ?? event.action}</Table.Td>
                  <Table.Td>
                    <Text size="sm" ff="monospace">
                      {event.type}
                    </Text>
                    {event.purpose && (
                      <Text size="xs" c="dimmed">
                        Purpose: {event.purpose}
                      </Text>
                    )}
                  </Table.Td>
                  <Table.Td>
                    <Badge variant="light" color={OUTCOME_COLOR[event.outcome] ?? 'gray'}>
                      {OUTCOME_LABEL[event.outcome] ?? event.outcome}
                    </Badge>
                  </Table.Td>
                  <Table.Td>
                    <Id value={event.actor.userId} />
                    {event.actor.role && (
                      <Text size="xs" c="dimmed">
                        {ROLE_LABEL[event.actor.role] ?? event.actor.role}
                      </Text>
                    )}
                  </Table.Td>
                  <Table.Td>
                    <Id value={event.patientId} />
                  </Table.Td>
                  <Table.Td>
                    {event.entity ? (
                      <>
                        <Text size="sm">
                          {event.entity.type}
                          {event.entity.version !== null && ` v${event.entity.version}`}
                        </Text>
                        <Id value={event.entity.id} />
                      </>
                    ) : (
                      <Text c="dimmed">—</Text>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}

      <LoadMore list={events} />
    </Stack>
  );
}
