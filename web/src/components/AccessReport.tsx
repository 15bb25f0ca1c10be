// "Who accessed this record": every access to the patient's record, newest first.
import { Stack, Table, Text, Title } from '@mantine/core';
import { LoadMore, usePagedList } from '../paged';
import { formatDateTime, ROLE_LABEL } from '../format';
import { ErrorAlert } from './ErrorAlert';

interface Entry {
  at: string;
  action: string;
  type: string;
  outcome: string;
  actor: { name: string | null; role: string | null; organization: string | null };
}

const ACTION_LABEL: Record<string, string> = {
  C: 'Added',
  R: 'Viewed',
  U: 'Changed',
  D: 'Deleted',
  E: 'Other',
};

export function AccessReport({ patientId }: { patientId: string }) {
  const report = usePagedList<Entry>(
    ['access-report', patientId],
    `/patients/${patientId}/access-report`,
    { limit: 50 },
  );
  const entries = report.items;

  return (
    <Stack>
      <Title order={2} size="h4">
        Who accessed this record
      </Title>
      <Text size="sm" c="dimmed">
        Every time someone opens or changes this record it is written down here, and cannot be
        removed.
      </Text>
      <ErrorAlert error={report.error} />
      <Table.ScrollContainer minWidth={520}>
        <Table aria-label="Accesses to this record" fz="sm" striped>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>When</Table.Th>
              <Table.Th>Who</Table.Th>
              <Table.Th>Role</Table.Th>
              <Table.Th>Organization</Table.Th>
              <Table.Th>What</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {entries.map((e, i) => (
              <Table.Tr key={`${e.at}-${i}`}>
                <Table.Td>{formatDateTime(e.at)}</Table.Td>
                <Table.Td>{e.actor.name ?? 'Unknown'}</Table.Td>
                <Table.Td>
                  {e.actor.role ? (ROLE_LABEL[e.actor.role] ?? e.actor.role) : ''}
                </Table.Td>
                <Table.Td>{e.actor.organization ?? ''}</Table.Td>
                <Table.Td>
                  {ACTION_LABEL[e.action] ?? e.action} · {e.type}
                  {e.outcome !== 'success' ? ` (${e.outcome})` : ''}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      <LoadMore list={report} label="Show older" />
    </Stack>
  );
}
