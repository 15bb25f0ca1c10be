// The signed-in person's account: who they are, turning on two-step sign-in (TOTP), and the
// places they are signed in, with a way to end the others.
import { useState } from 'react';
import type { SubmitEvent } from 'react';
import {
  ActionIcon,
  Badge,
  Button,
  Card,
  Center,
  Code,
  CopyButton,
  Group,
  List,
  Loader,
  PasswordInput,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
  Tooltip,
  VisuallyHidden,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconCheck, IconCopy, IconShieldCheck } from '@tabler/icons-react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api } from '../api';
import { ErrorAlert } from '../components/ErrorAlert';
import { formatDateTime, ROLE_LABEL } from '../format';
import { useSession, useUser } from '../session';

/** GET /me/sessions item (auth.routes.ts). */
interface SignInSession {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  ip: string | null;
  userAgent: string | null;
  current: boolean;
}

interface TotpEnrolment {
  secret: string;
  otpauthUrl: string;
}

const SESSIONS_KEY = ['my-sessions'] as const;

export function AccountPage() {
  const user = useUser();
  return (
    <Stack gap="lg" maw={900}>
      <Title order={1} size="h2">
        Your account
      </Title>
      <Card withBorder padding="lg" component="section" aria-labelledby="account-details">
        <Title order={2} size="h4" id="account-details" mb="sm">
          Details
        </Title>
        <Table withRowBorders={false} verticalSpacing={4} aria-label="Account details">
          <Table.Tbody>
            <Table.Tr>
              <Table.Th scope="row" w={120}>
                Name
              </Table.Th>
              <Table.Td>{user.name}</Table.Td>
            </Table.Tr>
            <Table.Tr>
              <Table.Th scope="row">Email</Table.Th>
              <Table.Td>{user.email}</Table.Td>
            </Table.Tr>
            <Table.Tr>
              <Table.Th scope="row">Role</Table.Th>
              <Table.Td>
                {user.role ? (ROLE_LABEL[user.role] ?? user.role) : 'Not a staff member'}
              </Table.Td>
            </Table.Tr>
          </Table.Tbody>
        </Table>
        <Text size="xs" c="dimmed" mt="xs">
          To change your name, email or role, ask your administrator.
        </Text>
      </Card>
      <TwoStepSignIn />
      <Sessions />
    </Stack>
  );
}

function TwoStepSignIn() {
  const user = useUser();
  const session = useSession();
  const [enrolment, setEnrolment] = useState<TotpEnrolment | null>(null);
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');

  const start = useMutation({
    mutationFn: () => api<TotpEnrolment>('POST', '/me/mfa/totp'),
    onSuccess: (answer) => {
      setCode('');
      setEnrolment(answer);
    },
  });
  const verify = useMutation({
    // The password again: a session left open on a shared computer is not enough to turn it on.
    mutationFn: (body: { code: string; password: string }) =>
      api('POST', '/me/mfa/totp/verify', { body }),
    onSuccess: async () => {
      setEnrolment(null);
      setCode('');
      setPassword('');
      notifications.show({
        color: 'teal',
        title: 'Two-step sign-in is on',
        message: 'From now on, sign-in asks for a code from your authenticator app.',
      });
      // The session's user carries mfaEnabled: reload it so the page shows the new state.
      await session.refresh();
    },
  });

  const submit = (event: SubmitEvent) => {
    event.preventDefault();
    if (code.length === 6 && password !== '') verify.mutate({ code, password });
  };

  return (
    <Card withBorder padding="lg" component="section" aria-labelledby="two-step">
      <Title order={2} size="h4" id="two-step" mb="sm">
        Two-step sign-in
      </Title>
      {user.mfaEnabled ? (
        <Stack gap="xs">
          <Group>
            <Badge color="green" size="lg" leftSection={<IconShieldCheck size={14} aria-hidden />}>
              Two-step sign-in is on
            </Badge>
          </Group>
          <Text size="sm" c="dimmed">
            Signing in needs your password and a code from your authenticator app. If you lose the
            phone with the app, ask your administrator to help you sign in.
          </Text>
        </Stack>
      ) : enrolment === null ? (
        <Stack gap="sm" align="flex-start">
          <Text size="sm">
            Protect the records you can see: with two-step sign-in, a stolen password is not enough
            to get in. You need an authenticator app on your phone (for example Google
            Authenticator, Microsoft Authenticator or 1Password).
          </Text>
          <Button
            loading={start.isPending}
            onClick={() => {
              start.mutate();
            }}
          >
            Turn on two-step sign-in
          </Button>
          <ErrorAlert error={start.error} title="Two-step sign-in could not be started" />
        </Stack>
      ) : (
        <Stack gap="md">
          <List type="ordered" spacing="xs" size="sm">
            <List.Item>
              In your authenticator app, choose to add an account by entering a setup key, and enter
              this key (time-based):
              <CopyableText
                value={enrolment.secret}
                shown={groupsOfFour(enrolment.secret)}
                label="setup key"
              />
            </List.Item>
            <List.Item>
              Or, if your app accepts a setup link, use this one:
              <CopyableText
                value={enrolment.otpauthUrl}
                shown={enrolment.otpauthUrl}
                label="setup link"
              />
            </List.Item>
            <List.Item>
              Enter the 6-digit code the app now shows for Caretrail, and your password to confirm
              it is you.
            </List.Item>
          </List>
          <form onSubmit={submit}>
            <Group align="flex-end" gap="sm">
              <TextInput
                label="6-digit code"
                description="The code changes every 30 seconds."
                inputMode="numeric"
                autoComplete="one-time-code"
                maxLength={6}
                value={code}
                onChange={(event) => {
                  // Apps show the code as "123 456"; keep the digits only.
                  setCode(event.currentTarget.value.replace(/\D/g, '').slice(0, 6));
                }}
                w={180}
                data-autofocus
              />
              <PasswordInput
                label="Your password"
                autoComplete="current-password"
                value={password}
                onChange={(event) => {
                  setPassword(event.currentTarget.value);
                }}
                w={220}
              />
              <Button
                type="submit"
                disabled={code.length !== 6 || password === ''}
                loading={verify.isPending}
              >
                Check code and turn on
              </Button>
              <Button
                variant="default"
                onClick={() => {
                  setEnrolment(null);
                  setPassword('');
                  verify.reset();
                }}
              >
                Cancel
              </Button>
            </Group>
          </form>
          <ErrorAlert error={verify.error} title="Two-step sign-in is not on yet" />
        </Stack>
      )}
    </Card>
  );
}

/** "JBSW Y3DP EHPK 3PXP": easier to type into an app than one long run of letters. */
const groupsOfFour = (secret: string) => secret.match(/.{1,4}/g)?.join(' ') ?? secret;

function CopyableText({ value, shown, label }: { value: string; shown: string; label: string }) {
  return (
    <Group gap="xs" wrap="nowrap" mt={4} align="flex-start">
      <Code block style={{ overflowWrap: 'anywhere', whiteSpace: 'pre-wrap', flex: 1 }}>
        {shown}
      </Code>
      <CopyButton value={value} timeout={2000}>
        {({ copied, copy }) => (
          <Tooltip label={copied ? 'Copied' : `Copy the ${label}`} withArrow>
            <ActionIcon
              variant="subtle"
              color={copied ? 'teal' : 'gray'}
              onClick={copy}
              aria-label={copied ? `The ${label} is copied` : `Copy the ${label}`}
            >
              {copied ? <IconCheck size={16} aria-hidden /> : <IconCopy size={16} aria-hidden />}
            </ActionIcon>
          </Tooltip>
        )}
      </CopyButton>
    </Group>
  );
}

function Sessions() {
  const queryClient = useQueryClient();
  const sessions = useQuery({
    queryKey: SESSIONS_KEY,
    queryFn: ({ signal }) => api<{ items: SignInSession[] }>('GET', '/me/sessions', { signal }),
  });
  const end = useMutation({
    mutationFn: (session: SignInSession) => api('DELETE', `/me/sessions/${session.id}`),
    onSuccess: async (_answer, session) => {
      notifications.show({
        color: 'teal',
        title: 'Signed out there',
        message: `${deviceOf(session.userAgent)} is signed out. Whoever uses it must sign in again.`,
      });
      await queryClient.invalidateQueries({ queryKey: SESSIONS_KEY });
    },
  });
  const items = sessions.data?.items ?? [];

  return (
    <Card withBorder padding="lg" component="section" aria-labelledby="where-signed-in">
      <Title order={2} size="h4" id="where-signed-in" mb="xs">
        Where you are signed in
      </Title>
      <Text size="sm" c="dimmed" mb="sm">
        If you see a place you do not recognise, end it and tell your administrator.
      </Text>
      {sessions.isPending && (
        <Center py="md">
          <Loader size="sm" role="status" aria-label="Loading where you are signed in" />
        </Center>
      )}
      <ErrorAlert error={sessions.error} title="Your sign-ins could not be loaded" />
      <ErrorAlert error={end.error} title="That sign-in could not be ended" />
      {sessions.isSuccess && (
        <Table.ScrollContainer minWidth={640}>
          <Table verticalSpacing="xs" fz="sm" aria-label="Where you are signed in">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Device</Table.Th>
                <Table.Th>IP address</Table.Th>
                <Table.Th>Signed in</Table.Th>
                <Table.Th>Last active</Table.Th>
                <Table.Th>Ends</Table.Th>
                <Table.Th>
                  <VisuallyHidden>Action</VisuallyHidden>
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {items.map((session) => {
                const device = deviceOf(session.userAgent);
                return (
                  <Table.Tr key={session.id}>
                    <Table.Td title={session.userAgent ?? undefined}>
                      {device}
                      {session.current && (
                        <Badge ml="xs" size="sm" variant="light">
                          This device
                        </Badge>
                      )}
                    </Table.Td>
                    <Table.Td>{session.ip ?? 'Unknown'}</Table.Td>
                    <Table.Td>{formatDateTime(session.createdAt)}</Table.Td>
                    <Table.Td>{formatDateTime(session.lastSeenAt)}</Table.Td>
                    <Table.Td>{formatDateTime(session.expiresAt)}</Table.Td>
                    <Table.Td>
                      {!session.current && (
                        <Button
                          size="xs"
                          variant="outline"
                          color="red"
                          loading={end.isPending && end.variables.id === session.id}
                          aria-label={`End the sign-in on ${device}, last active ${formatDateTime(session.lastSeenAt)}`}
                          onClick={() => {
                            end.mutate(session);
                          }}
                        >
                          End
                        </Button>
                      )}
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
    </Card>
  );
}

/** "Firefox on Windows" from a user-agent string: enough to recognise one's own devices. */
function deviceOf(userAgent: string | null): string {
  if (!userAgent) return 'Unknown device';
  const browser = /Edg\//.test(userAgent)
    ? 'Edge'
    : /Firefox\//.test(userAgent)
      ? 'Firefox'
      : /Chrome\//.test(userAgent)
        ? 'Chrome'
        : /Safari\//.test(userAgent)
          ? 'Safari'
          : null;
  const system = /iPhone|iPad/.test(userAgent)
    ? 'iPhone or iPad'
    : /Android/.test(userAgent)
      ? 'Android'
      : /Windows/.test(userAgent)
        ? 'Windows'
        : /Mac OS X|Macintosh/.test(userAgent)
          ? 'Mac'
          : /Linux/.test(userAgent)
            ? 'Linux'
            : null;
  if (browser && system) return `${browser} on ${system}`;
  return browser ?? system ?? userAgent.slice(0, 60);
}
