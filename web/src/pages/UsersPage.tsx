// The organization's staff accounts (admins): list, add, change role, disable, end sessions.
import { useState } from 'react';
import type { SubmitEvent } from 'react';
import {
  Badge,
  Button,
  Group,
  Loader,
  Modal,
  PasswordInput,
  Select,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { IconUserPlus } from '@tabler/icons-react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, newIdempotencyKey } from '../api';
import { LoadMore, usePagedList } from '../paged';
import { ErrorAlert } from '../components/ErrorAlert';
import { formatDate, ROLE_LABEL } from '../format';
import { useUser } from '../session';
import type { Role, User } from '../types';

/** The server's rule (src/services/passwords.ts), checked here too so the form says it first. */
const MIN_PASSWORD_LENGTH = 12;

const ROLES: Role[] = ['admin', 'clinician', 'nurse', 'reception', 'auditor'];
const ROLE_OPTIONS = ROLES.map((role) => ({ value: role, label: ROLE_LABEL[role] ?? role }));

const USERS_KEY = ['users'] as const;

type UserChange = { role: Role } | { disabled: boolean };

export function UsersPage() {
  const me = useUser();
  const queryClient = useQueryClient();
  const [adding, setAdding] = useState(false);

  const users = usePagedList<User>(USERS_KEY, '/users');

  const update = useMutation({
    mutationFn: ({ user, change }: { user: User; change: UserChange }) =>
      api<User>('PATCH', `/users/${user.id}`, { body: change }),
    onSuccess: (updated, { change }) => {
      notifications.show({
        color: 'teal',
        message:
          'role' in change
            ? `${updated.name} is now ${ROLE_LABEL[updated.role ?? ''] ?? updated.role}; their sessions have ended.`
            : updated.disabled
              ? `${updated.name} can no longer sign in; their sessions have ended.`
              : `${updated.name} can sign in again.`,
      });
    },
    onSettled: () => queryClient.invalidateQueries({ queryKey: USERS_KEY }),
  });

  const logout = useMutation({
    mutationFn: (user: User) => api<{ sessionsEnded: number }>('POST', `/users/${user.id}/logout`),
    onSuccess: ({ sessionsEnded }, user) => {
      notifications.show({
        color: 'teal',
        message:
          sessionsEnded === 0
            ? `${user.name} had no open sessions.`
            : `${user.name} was signed out of ${sessionsEnded} session${sessionsEnded === 1 ? '' : 's'}.`,
      });
    },
  });

  // Changing a role or disabling ends the person's sessions, so both are confirmed first.
  function confirmRole(user: User, role: Role) {
    modals.openConfirmModal({
      title: `Change ${user.name}'s role?`,
      children: (
        <Text size="sm">
          {user.name} becomes {ROLE_LABEL[role]}. They are signed out everywhere and sign in again
          with the new role&apos;s access.
        </Text>
      ),
      labels: { confirm: 'Change role', cancel: 'Cancel' },
      onConfirm: () => {
        update.mutate({ user, change: { role } });
      },
    });
  }

  function confirmDisabled(user: User, disabled: boolean) {
    if (!disabled) {
      update.mutate({ user, change: { disabled } });
      return;
    }
    modals.openConfirmModal({
      title: `Disable ${user.name}?`,
      children: (
        <Text size="sm">
          {user.name} is signed out everywhere and can no longer sign in. Their records and audit
          history are kept; you can enable the account again later.
        </Text>
      ),
      labels: { confirm: 'Disable account', cancel: 'Cancel' },
      confirmProps: { color: 'red' },
      onConfirm: () => {
        update.mutate({ user, change: { disabled } });
      },
    });
  }

  function confirmLogout(user: User) {
    modals.openConfirmModal({
      title: `Sign ${user.name} out everywhere?`,
      children: (
        <Text size="sm">
          Every open session of {user.name} ends now, on every device (for a lost device or a shared
          computer). They can sign in again.
        </Text>
      ),
      labels: { confirm: 'Sign out everywhere', cancel: 'Cancel' },
      onConfirm: () => {
        logout.mutate(user);
      },
    });
  }

  const rows = users.items;
  const pending = update.isPending ? update.variables : null;

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">
          Users
        </Title>
        <Button
          leftSection={<IconUserPlus size={18} aria-hidden />}
          onClick={() => {
            setAdding(true);
          }}
        >
          Add user
        </Button>
      </Group>

      <ErrorAlert error={update.error} title="The account was not changed" />
      <ErrorAlert error={logout.error} title="The sessions were not ended" />
      <ErrorAlert error={users.error} title="The users could not be loaded" />

      {users.isPending ? (
        <Loader role="status" aria-label="Loading users" />
      ) : (
        <Table.ScrollContainer minWidth={800}>
          <Table striped verticalSpacing="sm">
            <Table.Caption>Staff accounts of your organization</Table.Caption>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Email</Table.Th>
                <Table.Th>Role</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Added</Table.Th>
                <Table.Th>Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {rows.map((user) => {
                // Your own role and access are changed by another admin, so you cannot lock
                // yourself out mid-session.
                const self = user.id === me.id;
                const busy = pending?.user.id === user.id;
                return (
                  <Table.Tr key={user.id}>
                    <Table.Td>
                      {user.name}
                      {self && (
                        <Text span c="dimmed" size="sm">
                          {' '}
                          (you)
                        </Text>
                      )}
                    </Table.Td>
                    <Table.Td>{user.email}</Table.Td>
                    <Table.Td>
                      <Select
                        aria-label={`Role of ${user.name}`}
                        data={ROLE_OPTIONS}
                        value={user.role}
                        allowDeselect={false}
                        disabled={self || busy}
                        w={160}
                        onChange={(value) => {
                          if (value && value !== user.role) confirmRole(user, value);
                        }}
                      />
                    </Table.Td>
                    <Table.Td>
                      <Group gap={4}>
                        {user.disabled ? (
                          <Badge color="gray">Disabled</Badge>
                        ) : (
                          <Badge color="teal">Active</Badge>
                        )}
                        {user.mfaEnabled && <Badge variant="light">Two-step</Badge>}
                      </Group>
                    </Table.Td>
                    <Table.Td>{formatDate(user.createdAt)}</Table.Td>
                    <Table.Td>
                      {!self && (
                        <Group gap="xs" wrap="nowrap">
                          <Button
                            size="xs"
                            variant="default"
                            loading={busy && 'disabled' in pending.change}
                            onClick={() => {
                              confirmDisabled(user, !user.disabled);
                            }}
                          >
                            {user.disabled ? 'Enable' : 'Disable'}
                          </Button>
                          {!user.disabled && (
                            <Button
                              size="xs"
                              variant="default"
                              loading={logout.isPending && logout.variables.id === user.id}
                              onClick={() => {
                                confirmLogout(user);
                              }}
                            >
                              Sign out everywhere
                            </Button>
                          )}
                        </Group>
                      )}
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}

      <LoadMore list={users} />

      <AddUserModal
        opened={adding}
        onClose={() => {
          setAdding(false);
        }}
      />
    </Stack>
  );
}

interface AddUserForm {
  email: string;
  name: string;
  role: Role | null;
  password: string;
}

const EMPTY_FORM: AddUserForm = { email: '', name: '', role: null, password: '' };

function problemsOf(form: AddUserForm): Partial<Record<keyof AddUserForm, string>> {
  const problems: Partial<Record<keyof AddUserForm, string>> = {};
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(form.email.trim()))
    problems.email = 'Enter the email address they sign in with, e.g. name@clinic.example.';
  if (form.name.trim() === '') problems.name = 'Enter their name as colleagues know it.';
  if (!form.role) problems.role = 'Choose what they may do in Caretrail.';
  if (form.password.length < MIN_PASSWORD_LENGTH)
    problems.password = `Use at least ${MIN_PASSWORD_LENGTH} characters.`;
  return problems;
}

function AddUserModal({ opened, onClose }: { opened: boolean; onClose: () => void }) {
  const queryClient = useQueryClient();
  const [form, setForm] = useState<AddUserForm>(EMPTY_FORM);
  const [showProblems, setShowProblems] = useState(false);
  // One key per filled-in form, so a retried or double-clicked submit creates one account.
  const [idempotencyKey, setIdempotencyKey] = useState(() => newIdempotencyKey());

  const create = useMutation({
    mutationFn: (input: AddUserForm & { role: Role }) =>
      api<User>('POST', '/users', {
        body: { ...input, email: input.email.trim(), name: input.name.trim() },
        headers: { 'idempotency-key': idempotencyKey },
      }),
    onSuccess: (user) => {
      notifications.show({
        color: 'teal',
        message: `${user.name} was added. Give them their password through a private channel.`,
      });
      void queryClient.invalidateQueries({ queryKey: USERS_KEY });
      close();
    },
  });

  function close() {
    setForm(EMPTY_FORM);
    setShowProblems(false);
    setIdempotencyKey(newIdempotencyKey());
    create.reset();
    onClose();
  }

  function set<K extends keyof AddUserForm>(key: K, value: AddUserForm[K]) {
    setForm((current) => ({ ...current, [key]: value }));
    // A changed form is a new request, not a retry of the old one.
    setIdempotencyKey(newIdempotencyKey());
  }

  const problems = problemsOf(form);
  const shown = showProblems ? problems : {};

  function submit(event: SubmitEvent<HTMLFormElement>) {
    event.preventDefault();
    setShowProblems(true);
    if (Object.keys(problems).length > 0 || !form.role) return;
    create.mutate({ ...form, role: form.role });
  }

  return (
    <Modal opened={opened} onClose={close} title="Add a user">
      <form onSubmit={submit} noValidate>
        <Stack>
          <TextInput
            label="Email"
            type="email"
            autoComplete="off"
            required
            value={form.email}
            error={shown.email}
            onChange={(event) => {
              set('email', event.currentTarget.value);
            }}
          />
          <TextInput
            label="Name"
            required
            maxLength={200}
            value={form.name}
            error={shown.name}
            onChange={(event) => {
              set('name', event.currentTarget.value);
            }}
          />
          <Select
            label="Role"
            required
            data={ROLE_OPTIONS}
            value={form.role}
            error={shown.role}
            onChange={(value) => {
              set('role', value);
            }}
          />
          <PasswordInput
            label="First password"
            description={`At least ${MIN_PASSWORD_LENGTH} characters. Tell it to them privately, never by email.`}
            autoComplete="new-password"
            required
            maxLength={256}
            value={form.password}
            error={shown.password}
            onChange={(event) => {
              set('password', event.currentTarget.value);
            }}
          />
          <ErrorAlert error={create.error} title="The user was not added" />
          <Group justify="flex-end">
            <Button variant="default" onClick={close}>
              Cancel
            </Button>
            <Button type="submit" loading={create.isPending}>
              Add user
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}
