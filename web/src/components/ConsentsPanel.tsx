// The owner's consents to share the record outside the clinic; the owner (or staff) can
// withdraw one, which ends the shares that rely on it.
import { Badge, Button, Stack, Table, Text, Title } from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, messageOf } from '../api';
import { formatDateTime } from '../format';
import type { Page } from '../types';
import { ErrorAlert } from './ErrorAlert';

interface Consent {
  id: string;
  granteeEmail: string;
  purpose: string;
  scope: string;
  method: string;
  createdAt: string;
  expiresAt: string | null;
  status: 'active' | 'expired' | 'revoked';
}

export function ConsentsPanel({ patientId }: { patientId: string }) {
  const queryClient = useQueryClient();
  const consents = useQuery({
    queryKey: ['consents', patientId],
    queryFn: () => api<Page<Consent>>('GET', `/patients/${patientId}/consents?limit=200`),
  });

  function revoke(consent: Consent) {
    modals.openConfirmModal({
      title: 'Withdraw this consent?',
      children: (
        <Text size="sm">
          {consent.granteeEmail} will lose access that relies on this consent ({consent.purpose}).
        </Text>
      ),
      labels: { confirm: 'Withdraw consent', cancel: 'Keep it' },
      confirmProps: { color: 'red' },
      onConfirm: () => {
        api('POST', `/consents/${consent.id}/revoke`)
          .then(() => {
            notifications.show({ message: `Consent for ${consent.granteeEmail} withdrawn.` });
            return Promise.all([
              queryClient.invalidateQueries({ queryKey: ['consents', patientId] }),
              queryClient.invalidateQueries({ queryKey: ['shares', patientId] }),
            ]);
          })
          .catch((err: unknown) => notifications.show({ color: 'red', message: messageOf(err) }));
      },
    });
  }

  const items = consents.data?.items ?? [];
  return (
    <Stack>
      <Title order={2} size="h4">
        Consents to share
      </Title>
      <ErrorAlert error={consents.error} />
      {consents.data && items.length === 0 && (
        <Text c="dimmed">No consent has been given to share this record.</Text>
      )}
      {items.length > 0 && (
        <Table.ScrollContainer minWidth={560}>
          <Table aria-label="Consents" fz="sm">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>For</Table.Th>
                <Table.Th>Purpose</Table.Th>
                <Table.Th>Given</Table.Th>
                <Table.Th>Ends</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>
                  <span className="mantine-visually-hidden">Actions</span>
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((c) => (
                <Table.Tr key={c.id}>
                  <Table.Td>{c.granteeEmail}</Table.Td>
                  <Table.Td>{c.purpose}</Table.Td>
                  <Table.Td>{formatDateTime(c.createdAt)}</Table.Td>
                  <Table.Td>
                    {c.expiresAt ? formatDateTime(c.expiresAt) : 'Until withdrawn'}
                  </Table.Td>
                  <Table.Td>
                    <Badge variant="light" color={c.status === 'active' ? 'teal' : 'gray'}>
                      {c.status}
                    </Badge>
                  </Table.Td>
                  <Table.Td>
                    {c.status === 'active' && (
                      <Button
                        size="compact-sm"
                        variant="subtle"
                        color="red"
                        onClick={() => {
                          revoke(c);
                        }}
                        aria-label={`Withdraw consent for ${c.granteeEmail}`}
                      >
                        Withdraw
                      </Button>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Stack>
  );
}
