// A document or image in the timeline: thumbnail, name, size; open in the viewer, download,
// versions (and a new version), delete and restore.
import { useState } from 'react';
import {
  Anchor,
  Badge,
  Button,
  Card,
  FileButton,
  Group,
  Image,
  Menu,
  Modal,
  Stack,
  Table,
  Text,
  UnstyledButton,
  ActionIcon,
} from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { IconDots, IconFile, IconPhoto } from '@tabler/icons-react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, messageOf, upload } from '../api';
import { formatDateTime, formatSize } from '../format';
import type { CaretrailDocument, DocumentVersion } from '../types';
import { ErrorAlert } from './ErrorAlert';
import { isDicom, isImage } from './ImageViewer';

const metadataText = (doc: CaretrailDocument, key: string): string => {
  const value = doc.metadata?.[key];
  return typeof value === 'string' ? value : '';
};

function VersionsDialog({ doc, onClose }: { doc: CaretrailDocument; onClose: () => void }) {
  const queryClient = useQueryClient();
  const versions = useQuery({
    queryKey: ['document-versions', doc.id],
    queryFn: () => api<{ items: DocumentVersion[] }>('GET', `/documents/${doc.id}/versions`),
  });
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);

  async function replace(file: File | null) {
    if (!file) return;
    setError(null);
    setProgress(0);
    const form = new FormData();
    form.append('file', file, file.name);
    try {
      await upload('PUT', `/documents/${doc.id}/content`, form, setProgress).promise;
      notifications.show({
        color: 'teal',
        message: `Version ${doc.version + 1} of ${doc.filename} saved.`,
      });
      await queryClient.invalidateQueries({ queryKey: ['document-versions', doc.id] });
      await queryClient.invalidateQueries({ queryKey: ['documents', doc.patientId] });
    } catch (err) {
      setError(err);
    } finally {
      setProgress(null);
    }
  }

  return (
    <Modal opened onClose={onClose} title={`Versions of ${doc.title ?? doc.filename}`} size="lg">
      <Stack>
        <ErrorAlert error={versions.error ?? error} />
        <Table aria-label="Versions" fz="sm">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Version</Table.Th>
              <Table.Th>File</Table.Th>
              <Table.Th>Saved</Table.Th>
              <Table.Th>Download</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {(versions.data?.items ?? []).map((v) => (
              <Table.Tr key={v.version}>
                <Table.Td>{v.version}</Table.Td>
                <Table.Td>
                  {v.filename} ({formatSize(v.size)})
                </Table.Td>
                <Table.Td>{formatDateTime(v.createdAt)}</Table.Td>
                <Table.Td>
                  <Anchor
                    href={`/api/v1/documents/${doc.id}/versions/${v.version}/content`}
                    download={v.filename}
                  >
                    Download v{v.version}
                  </Anchor>
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
        {doc.status === 'active' && (
          <FileButton onChange={(file) => void replace(file)}>
            {(props) => (
              <Button {...props} loading={progress !== null} variant="light" w="fit-content">
                Upload a new version
              </Button>
            )}
          </FileButton>
        )}
        <Text size="xs" c="dimmed">
          Earlier versions are kept: a replaced file can always be downloaded again.
        </Text>
      </Stack>
    </Modal>
  );
}

export function DocumentCard({
  doc,
  canWrite,
  onView,
}: {
  doc: CaretrailDocument;
  canWrite: boolean;
  onView: (doc: CaretrailDocument) => void;
}) {
  const queryClient = useQueryClient();
  const [showVersions, setShowVersions] = useState(false);
  const viewable = (isImage(doc) || isDicom(doc)) && doc.status === 'active';
  const thumbnail = doc.preview.status === 'ready' && doc.status === 'active';
  const name = doc.title ?? doc.filename;

  const refresh = () => queryClient.invalidateQueries({ queryKey: ['documents', doc.patientId] });
  function remove() {
    modals.openConfirmModal({
      title: 'Delete this file?',
      children: (
        <Text size="sm">
          {name} will be hidden from the chart. It is kept, and can be restored from the deleted
          files.
        </Text>
      ),
      labels: { confirm: 'Delete', cancel: 'Cancel' },
      confirmProps: { color: 'red' },
      onConfirm: () => {
        api('DELETE', `/documents/${doc.id}`)
          .then(() => {
            notifications.show({
              message: `${name} deleted. You can restore it from “Show deleted files”.`,
            });
            return refresh();
          })
          .catch((err: unknown) => notifications.show({ color: 'red', message: messageOf(err) }));
      },
    });
  }
  function restore() {
    api('POST', `/documents/${doc.id}/restore`)
      .then(() => {
        notifications.show({ color: 'teal', message: `${name} restored.` });
        return refresh();
      })
      .catch((err: unknown) => notifications.show({ color: 'red', message: messageOf(err) }));
  }

  return (
    <Card withBorder padding="md" component="article" aria-label={`File ${name}`}>
      <Group wrap="nowrap" align="flex-start">
        <UnstyledButton
          onClick={() => {
            if (viewable) onView(doc);
          }}
          aria-label={viewable ? `View ${name}` : undefined}
          disabled={!viewable}
          style={{ flexShrink: 0 }}
        >
          {thumbnail ? (
            <Image
              src={`/api/v1/documents/${doc.id}/thumbnail`}
              alt={`Thumbnail of ${name}`}
              w={112}
              h={112}
              fit="contain"
              radius="sm"
              bg="dark.8"
              data-testid="thumbnail"
            />
          ) : (
            <Stack
              w={112}
              h={112}
              align="center"
              justify="center"
              bg="gray.1"
              style={{ borderRadius: 4 }}
            >
              {isImage(doc) || isDicom(doc) ? <IconPhoto aria-hidden /> : <IconFile aria-hidden />}
              <Text size="xs" c="dimmed" ta="center">
                {doc.preview.status === 'pending' ? 'Preview coming…' : 'No preview'}
              </Text>
            </Stack>
          )}
        </UnstyledButton>
        <Stack gap={4} style={{ minWidth: 0, flex: 1 }}>
          <Group justify="space-between" wrap="nowrap">
            <Text fw={600} truncate>
              {name}
            </Text>
            <Menu position="bottom-end" withinPortal>
              <Menu.Target>
                <ActionIcon variant="subtle" aria-label={`Actions for ${name}`}>
                  <IconDots size={18} />
                </ActionIcon>
              </Menu.Target>
              <Menu.Dropdown>
                {viewable && (
                  <Menu.Item
                    onClick={() => {
                      onView(doc);
                    }}
                  >
                    View
                  </Menu.Item>
                )}
                {doc.status === 'active' && (
                  <Menu.Item
                    component="a"
                    href={`/api/v1/documents/${doc.id}/content`}
                    download={doc.filename}
                  >
                    Download
                  </Menu.Item>
                )}
                <Menu.Item
                  onClick={() => {
                    setShowVersions(true);
                  }}
                >
                  Versions ({doc.version})
                </Menu.Item>
                {canWrite && doc.status === 'active' && (
                  <Menu.Item color="red" onClick={remove}>
                    Delete
                  </Menu.Item>
                )}
                {canWrite && doc.status === 'deleted' && (
                  <Menu.Item onClick={restore}>Restore</Menu.Item>
                )}
              </Menu.Dropdown>
            </Menu>
          </Group>
          <Group gap="xs">
            <Badge variant="light" color="gray">
              {doc.kind}
            </Badge>
            {doc.status === 'deleted' && (
              <Badge color="red" variant="light">
                Deleted
              </Badge>
            )}
            {doc.visibility === 'owner' && (
              <Badge color="blue" variant="light">
                Owner can see
              </Badge>
            )}
            {doc.version > 1 && (
              <Badge variant="outline" color="gray">
                v{doc.version}
              </Badge>
            )}
          </Group>
          <Text size="xs" c="dimmed">
            {doc.filename} · {formatSize(doc.size)} · {formatDateTime(doc.createdAt)}
          </Text>
          {isDicom(doc) && (
            <Text size="xs" c="dimmed">
              DICOM {metadataText(doc, 'modality')} {metadataText(doc, 'bodyPart')}
            </Text>
          )}
        </Stack>
      </Group>
      {showVersions && (
        <VersionsDialog
          doc={doc}
          onClose={() => {
            setShowVersions(false);
          }}
        />
      )}
    </Card>
  );
}
