// Share a patient with an owner, trainer, walker, carer or referral vet, with an expiry; record
// the owner's consent when the share needs it; list and revoke shares.
import { useState } from 'react';
import {
  Badge,
  Button,
  Group,
  Modal,
  Select,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ApiError, messageOf } from '../api';
import { formatDateTime, ROLE_LABEL } from '../format';
import type { Page, Patient } from '../types';
import { ErrorAlert } from './ErrorAlert';

interface Share {
  id: string;
  email: string;
  role: string;
  access: 'read' | 'write';
  expiresAt: string | null;
  status: 'active' | 'pending' | 'expired' | 'revoked';
  createdAt: string;
}

const ROLES = [
  { value: 'owner', label: 'Owner' },
  { value: 'trainer', label: 'Trainer' },
  { value: 'walker', label: 'Walker' },
  { value: 'carer', label: 'Carer' },
  { value: 'clinician', label: 'Referral vet' },
];

/** The end of the chosen day in local time, as ISO; empty means no expiry. */
const endOfDay = (date: string) => (date ? new Date(`${date}T23:59:59`).toISOString() : undefined);

function ShareDialog({ patient, onClose }: { patient: Patient; onClose: () => void }) {
  const queryClient = useQueryClient();
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<string>('trainer');
  const [access, setAccess] = useState<string>('read');
  const [expires, setExpires] = useState('');
  const [step, setStep] = useState<'share' | 'consent'>('share');
  const [purpose, setPurpose] = useState('');
  const [method, setMethod] = useState<string>('in_person');
  const [ownerId, setOwnerId] = useState<string | null>(patient.owners[0]?.id ?? null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const share = () =>
    api('POST', `/patients/${patient.id}/shares`, {
      body: { email, role, access, ...(expires ? { expiresAt: endOfDay(expires) } : {}) },
    });

  async function finish() {
    notifications.show({
      color: 'teal',
      message: `Shared with ${email}. They get an email to sign in${role === 'owner' ? '' : ' and see only what is shared with them'}.`,
    });
    await queryClient.invalidateQueries({ queryKey: ['shares', patient.id] });
    await queryClient.invalidateQueries({ queryKey: ['consents', patient.id] });
    onClose();
  }

  async function submit(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (step === 'consent') {
        await api('POST', `/patients/${patient.id}/consents`, {
          body: {
            granteeEmail: email,
            purpose,
            scope: access,
            method,
            ...(ownerId ? { ownerId } : {}),
            ...(expires ? { expiresAt: endOfDay(expires) } : {}),
          },
        });
      }
      await share();
      await finish();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'consent_required' && step === 'share') {
        setPurpose(`${ROLE_LABEL[role] ?? role} of ${patient.name}`);
        setStep('consent');
      } else setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal opened onClose={onClose} title={`Share ${patient.name}`} size="lg">
      <form onSubmit={(event) => void submit(event)}>
        <Stack>
          {step === 'share' ? (
            <>
              <Select
                label="Share with"
                data={ROLES}
                value={role}
                onChange={(v) => {
                  setRole(v ?? 'trainer');
                  // Owners add their own photos; others start with the least access.
                  setAccess(v === 'owner' ? 'write' : 'read');
                }}
                allowDeselect={false}
              />
              <TextInput
                label="Their email"
                type="email"
                required
                value={email}
                onChange={(e) => {
                  setEmail(e.currentTarget.value);
                }}
                description={
                  role === 'owner'
                    ? 'Must be the email of an owner on record.'
                    : 'They are emailed. Without an account, or as staff of another clinic, they accept from the mailed link.'
                }
              />
              <Select
                label="Access"
                data={[
                  { value: 'read', label: 'See shared notes and files' },
                  { value: 'write', label: 'See, and add notes and files' },
                ]}
                value={access}
                onChange={(v) => {
                  setAccess(v ?? 'read');
                }}
                allowDeselect={false}
              />
              <TextInput
                label="Ends on"
                type="date"
                description="Leave empty for a share that lasts until it is revoked."
                value={expires}
                onChange={(e) => {
                  setExpires(e.currentTarget.value);
                }}
              />
            </>
          ) : (
            <>
              <Title order={3} size="h5">
                The owner’s consent is needed
              </Title>
              <Text size="sm">
                {email} is outside your clinic, so the owner must agree first. Record how they gave
                consent; it is kept with the record and the owner can withdraw it in their portal.
              </Text>
              <Select
                label="Owner who consented"
                required
                data={patient.owners.map((o) => ({ value: o.id, label: o.name }))}
                value={ownerId}
                onChange={setOwnerId}
                allowDeselect={false}
              />
              <TextInput
                label="Purpose"
                required
                maxLength={500}
                value={purpose}
                onChange={(e) => {
                  setPurpose(e.currentTarget.value);
                }}
              />
              <Select
                label="How the owner consented"
                data={[
                  { value: 'in_person', label: 'In person, at the clinic' },
                  { value: 'signed_form', label: 'Signed form' },
                ]}
                value={method}
                onChange={(v) => {
                  setMethod(v ?? 'in_person');
                }}
                allowDeselect={false}
              />
            </>
          )}
          <ErrorAlert error={error} title="The record was not shared" />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" loading={busy}>
              {step === 'share' ? 'Share' : 'Record consent and share'}
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

export function SharingPanel({ patient }: { patient: Patient }) {
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const shares = useQuery({
    queryKey: ['shares', patient.id],
    queryFn: () => api<Page<Share>>('GET', `/patients/${patient.id}/shares?limit=200`),
  });

  function revoke(share: Share) {
    modals.openConfirmModal({
      title: 'Revoke this share?',
      children: (
        <Text size="sm">
          {share.email} will no longer see {patient.name} in Caretrail.
        </Text>
      ),
      labels: { confirm: 'Revoke', cancel: 'Cancel' },
      confirmProps: { color: 'red' },
      onConfirm: () => {
        api('DELETE', `/patients/${patient.id}/shares/${share.id}`)
          .then(() => {
            notifications.show({ message: `${share.email} no longer has access.` });
            return queryClient.invalidateQueries({ queryKey: ['shares', patient.id] });
          })
          .catch((err: unknown) => notifications.show({ color: 'red', message: messageOf(err) }));
      },
    });
  }

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h4">
          Shared with
        </Title>
        <Button
          onClick={() => {
            setOpen(true);
          }}
        >
          Share…
        </Button>
      </Group>
      <ErrorAlert error={shares.error} />
      {shares.data && shares.data.items.length === 0 && (
        <Text c="dimmed">Nobody outside the clinic can see this patient.</Text>
      )}
      {shares.data && shares.data.items.length > 0 && (
        <Table.ScrollContainer minWidth={560}>
          <Table aria-label="Shares" fz="sm">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Who</Table.Th>
                <Table.Th>As</Table.Th>
                <Table.Th>Access</Table.Th>
                <Table.Th>Ends</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>
                  <span className="mantine-visually-hidden">Actions</span>
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {shares.data.items.map((s) => (
                <Table.Tr key={s.id}>
                  <Table.Td>{s.email}</Table.Td>
                  <Table.Td>
                    {s.role === 'clinician' ? 'Referral vet' : (ROLE_LABEL[s.role] ?? s.role)}
                  </Table.Td>
                  <Table.Td>{s.access}</Table.Td>
                  <Table.Td>{s.expiresAt ? formatDateTime(s.expiresAt) : 'Until revoked'}</Table.Td>
                  <Table.Td>
                    <Badge variant="light" color={s.status === 'active' ? 'teal' : 'gray'}>
                      {s.status}
                    </Badge>
                  </Table.Td>
                  <Table.Td>
                    {(s.status === 'active' || s.status === 'pending') && (
                      <Button
                        size="compact-sm"
                        variant="subtle"
                        color="red"
                        onClick={() => {
                          revoke(s);
                        }}
                        aria-label={`Revoke the share with ${s.email}`}
                      >
                        Revoke
                      </Button>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {open && (
        <ShareDialog
          patient={patient}
          onClose={() => {
            setOpen(false);
          }}
        />
      )}
    </Stack>
  );
}
