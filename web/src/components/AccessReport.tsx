// "Who accessed this record": every access to the patient's record, newest first.
import { Button, Stack, Table, Text, Title } from '@mantine/core';
import { useInfiniteQuery } from '@tanstack/react-query';
import { api, query } from '../api';
import { formatDateTime, ROLE_LABEL } from '../format';
import type { Page } from '../types';
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
  const report = useInfiniteQuery({
    queryKey: ['access-report', patientId],
    queryFn: ({ pageParam }) =>
      api<Page<Entry>>(
        'GET',
        `/patients/${patientId}/access-report${query({ limit: 50, cursor: pageParam })}`,
      ),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  const entries = (report.data?.pages ?? []).flatMap((p) => p.items);

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
      {report.hasNextPage && (
        <Button
          variant="default"
          loading={report.isFetchingNextPage}
          onClick={() => void report.fetchNextPage()}
          w="fit-content"
        >
          Show older
        </Button>
      )}
    </Stack>
  );
}
