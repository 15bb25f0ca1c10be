// Integration keys for devices and lab systems (admins): list, create (shown once), revoke.
import { useState } from 'react';
import type { SubmitEvent } from 'react';
import {
  ActionIcon,
  Alert,
  Badge,
  Button,
  Code,
  CopyButton,
  Group,
  Loader,
  Modal,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
  Tooltip,
} from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { IconAlertTriangle, IconCheck, IconCopy, IconKey } from '@tabler/icons-react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api } from '../api';
import { LoadMore, usePagedList } from '../paged';
import { ErrorAlert } from '../components/ErrorAlert';
import { formatDateTime } from '../format';

interface IntegrationKey {
  id: string;
  name: string;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface CreatedIntegrationKey extends IntegrationKey {
  key: string;
  secret: string;
}

const KEYS_KEY = ['integration-keys'] as const;

export function IntegrationKeysPage() {
  const queryClient = useQueryClient();
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<CreatedIntegrationKey | null>(null);

  const keys = usePagedList<IntegrationKey>(KEYS_KEY, '/integrations/keys');

  const revoke = useMutation({
    mutationFn: (key: IntegrationKey) => api<undefined>('DELETE', `/integrations/keys/${key.id}`),
    onSuccess: (_answer, key) => {
      notifications.show({
        color: 'teal',
        message: `The key "${key.name}" was revoked. The system using it can no longer send results.`,
      });
    },
    onSettled: () => queryClient.invalidateQueries({ queryKey: KEYS_KEY }),
  });

  function confirmRevoke(key: IntegrationKey) {
    modals.openConfirmModal({
      title: `Revoke "${key.name}"?`,
      children: (
        <Text size="sm">
          The device or system using this key is refused from now on; this cannot be undone. To
          reconnect it, create a new key and enter it there.
        </Text>
      ),
      labels: { confirm: 'Revoke key', cancel: 'Cancel' },
      confirmProps: { color: 'red' },
      onConfirm: () => {
        revoke.mutate(key);
      },
    });
  }

  const rows = keys.items;

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">
          Integration keys
        </Title>
        <Button
          leftSection={<IconKey size={18} aria-hidden />}
          onClick={() => {
            setCreating(true);
          }}
        >
          Create key
        </Button>
      </Group>
      <Text c="dimmed" size="sm">
        Lab analysers, imaging devices and other systems send results to Caretrail with a key and a
        signing secret. Give each system its own key so you can revoke one without the others.
      </Text>

      <ErrorAlert error={revoke.error} title="The key was not revoked" />
      <ErrorAlert error={keys.error} title="The keys could not be loaded" />

      {keys.isPending ? (
        <Loader role="status" aria-label="Loading keys" />
      ) : rows.length === 0 && !keys.error ? (
        <Text>No keys yet. Create one for each device or system that sends results.</Text>
      ) : (
        <Table.ScrollContainer minWidth={640}>
          <Table striped verticalSpacing="sm">
            <Table.Caption>Integration keys of your organization</Table.Caption>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Name</Table.Th>
                <Table.Th>Created</Table.Th>
                <Table.Th>Last used</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {rows.map((key) => (
                <Table.Tr key={key.id}>
                  <Table.Td>{key.name}</Table.Td>
                  <Table.Td>{formatDateTime(key.createdAt)}</Table.Td>
                  <Table.Td>{key.lastUsedAt ? formatDateTime(key.lastUsedAt) : 'Never'}</Table.Td>
                  <Table.Td>
                    {key.revokedAt ? (
                      <Badge color="gray">Revoked {formatDateTime(key.revokedAt)}</Badge>
                    ) : (
                      <Badge color="teal">Active</Badge>
                    )}
                  </Table.Td>
                  <Table.Td>
                    {!key.revokedAt && (
                      <Button
                        size="xs"
                        variant="default"
                        color="red"
                        loading={revoke.isPending && revoke.variables.id === key.id}
                        onClick={() => {
                          confirmRevoke(key);
                        }}
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

      <LoadMore list={keys} />

      <CreateKeyModal
        opened={creating}
        onClose={() => {
          setCreating(false);
        }}
        onCreated={(key) => {
          setCreating(false);
          setCreated(key);
        }}
      />
      <CreatedKeyModal
        created={created}
        onClose={() => {
          setCreated(null);
        }}
      />
    </Stack>
  );
}

function CreateKeyModal({
  opened,
  onClose,
  onCreated,
}: {
  opened: boolean;
  onClose: () => void;
  onCreated: (key: CreatedIntegrationKey) => void;
}) {
  const queryClient = useQueryClient();
  const [name, setName] = useState('');
  const [showProblem, setShowProblem] = useState(false);

  const create = useMutation({
    mutationFn: (keyName: string) =>
      api<CreatedIntegrationKey>('POST', '/integrations/keys', { body: { name: keyName } }),
    onSuccess: (key) => {
      void queryClient.invalidateQueries({ queryKey: KEYS_KEY });
      reset();
      onCreated(key);
    },
  });

  function reset() {
    setName('');
    setShowProblem(false);
    create.reset();
  }

  const problem = name.trim() === '' ? 'Name the device or system this key is for.' : null;

  function submit(event: SubmitEvent<HTMLFormElement>) {
    event.preventDefault();
    setShowProblem(true);
    if (!problem) create.mutate(name.trim());
  }

  return (
    <Modal
      opened={opened}
      onClose={() => {
        reset();
        onClose();
      }}
      title="Create an integration key"
    >
      <form onSubmit={submit} noValidate>
        <Stack>
          <TextInput
            label="Name"
            description="The device or system that will use it, e.g. “In-house haematology analyser”."
            required
            maxLength={200}
            value={name}
            error={showProblem ? problem : null}
            onChange={(event) => {
              setName(event.currentTarget.value);
            }}
            data-autofocus
          />
          <ErrorAlert error={create.error} title="The key was not created" />
          <Group justify="flex-end">
            <Button
              variant="default"
              onClick={() => {
                reset();
                onClose();
              }}
            >
              Cancel
            </Button>
            <Button type="submit" loading={create.isPending}>
              Create key
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

function SecretField({ label, value }: { label: string; value: string }) {
  return (
    <div>
      <Text size="sm" fw={500}>
        {label}
      </Text>
      <Group gap="xs" wrap="nowrap" align="center">
        <Code block style={{ flex: 1, wordBreak: 'break-all', whiteSpace: 'pre-wrap' }}>
          {value}
        </Code>
        <CopyButton value={value} timeout={2000}>
          {({ copied, copy }) => (
            <Tooltip label={copied ? 'Copied' : `Copy the ${label.toLowerCase()}`} withArrow>
              <ActionIcon
                variant="default"
                size="lg"
                color={copied ? 'teal' : undefined}
                onClick={copy}
                aria-label={copied ? `${label} copied` : `Copy the ${label.toLowerCase()}`}
              >
                {copied ? <IconCheck size={18} aria-hidden /> : <IconCopy size={18} aria-hidden />}
              </ActionIcon>
            </Tooltip>
          )}
        </CopyButton>
      </Group>
    </div>
  );
}

/** The one time the key and secret exist outside the server: only hashes and wrapped copies are kept. */
function CreatedKeyModal({
  created,
  onClose,
}: {
  created: CreatedIntegrationKey | null;
  onClose: () => void;
}) {
  return (
    <Modal
      opened={created !== null}
      onClose={onClose}
      title={created ? `Key created: ${created.name}` : 'Key created'}
      size="lg"
      // A stray click outside must not lose the only copy.
      closeOnClickOutside={false}
    >
      {created && (
        <Stack>
          <Alert
            color="orange"
            icon={<IconAlertTriangle aria-hidden />}
            title="Copy them now: they cannot be shown again"
          >
            Enter both in the device or system&apos;s settings, or keep them in your password
            manager. If they are lost, revoke this key and create a new one.
          </Alert>
          <SecretField label="Key" value={created.key} />
          <SecretField label="Signing secret" value={created.secret} />
          <Text size="sm" c="dimmed">
            The system sends the key as <Code>Authorization: Bearer &lt;key&gt;</Code> and may sign
            each JSON result with the secret (<Code>X-Caretrail-Signature: sha256=…</Code>, an
            HMAC-SHA256 of the body).
          </Text>
          <Group justify="flex-end">
            <Button onClick={onClose}>I have copied them</Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}
