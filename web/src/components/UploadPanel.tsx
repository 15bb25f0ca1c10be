// Drag-and-drop (or pick) files into a patient's chart, with a progress bar per file.
import { useState } from 'react';
import { Button, Group, Progress, Select, Stack, Text } from '@mantine/core';
import { Dropzone } from '@mantine/dropzone';
import { IconUpload } from '@tabler/icons-react';
import { useQueryClient } from '@tanstack/react-query';
import { messageOf, upload } from '../api';
import { formatSize } from '../format';

const KINDS = [
  { value: 'auto', label: 'Choose from the file type' },
  { value: 'xray', label: 'X-ray' },
  { value: 'imaging', label: 'Other imaging' },
  { value: 'lab', label: 'Lab report' },
  { value: 'photo', label: 'Photo' },
  { value: 'video', label: 'Video' },
  { value: 'report', label: 'Report' },
  { value: 'form', label: 'Form' },
  { value: 'other', label: 'Other' },
];

function kindFor(file: File, choice: string): string {
  if (choice !== 'auto') return choice;
  if (file.type === 'application/dicom' || file.name.toLowerCase().endsWith('.dcm'))
    return 'imaging';
  if (file.type.startsWith('image/')) return 'photo';
  if (file.type.startsWith('video/')) return 'video';
  if (file.type === 'application/pdf') return 'report';
  return 'other';
}

interface Upload {
  key: string;
  name: string;
  size: number;
  progress: number;
  state: 'uploading' | 'done' | 'failed';
  message: string | null;
  abort: () => void;
}

export function UploadPanel({
  patientId,
  ownerMode = false,
}: {
  patientId: string;
  ownerMode?: boolean;
}) {
  const queryClient = useQueryClient();
  const [kind, setKind] = useState<string>(ownerMode ? 'photo' : 'auto');
  const [visibility, setVisibility] = useState<string>('internal');
  const [uploads, setUploads] = useState<Upload[]>([]);

  const patch = (key: string, change: Partial<Upload>) => {
    setUploads((list) => list.map((u) => (u.key === key ? { ...u, ...change } : u)));
  };

  function start(files: File[]) {
    for (const file of files) {
      const key = `${Date.now()}-${Math.random()}`;
      const form = new FormData();
      // Text fields first: the server reads them before it streams the file.
      form.append('kind', kindFor(file, kind));
      if (!ownerMode) form.append('visibility', visibility);
      form.append('file', file, file.name);
      const call = upload('POST', `/patients/${patientId}/documents`, form, (fraction) => {
        patch(key, { progress: Math.round(fraction * 100) });
      });
      setUploads((list) => [
        {
          key,
          name: file.name,
          size: file.size,
          progress: 0,
          state: 'uploading',
          message: null,
          abort: call.abort,
        },
        ...list,
      ]);
      call.promise
        .then(() => {
          patch(key, { state: 'done', progress: 100 });
          return queryClient.invalidateQueries({ queryKey: ['documents', patientId] });
        })
        .catch((err: unknown) => {
          patch(key, { state: 'failed', message: messageOf(err) });
        });
    }
  }

  return (
    <Stack gap="sm">
      <Group grow>
        {!ownerMode && (
          <Select
            label="Kind of file"
            data={KINDS}
            value={kind}
            onChange={(v) => {
              setKind(v ?? 'auto');
            }}
            allowDeselect={false}
          />
        )}
        {!ownerMode && (
          <Select
            label="Who can see it"
            data={[
              { value: 'internal', label: 'Clinic staff only' },
              { value: 'owner', label: 'Also the owner' },
            ]}
            value={visibility}
            onChange={(v) => {
              setVisibility(v ?? 'internal');
            }}
            allowDeselect={false}
          />
        )}
      </Group>
      <Dropzone
        onDrop={start}
        multiple
        aria-label="Upload files: drop them here or press Enter to choose"
        inputProps={{ 'aria-label': 'Choose files to upload' }}
      >
        <Group justify="center" gap="md" mih={90} style={{ pointerEvents: 'none' }}>
          <IconUpload size={32} aria-hidden />
          <div>
            <Text>
              {ownerMode
                ? 'Drop photos here, or click to choose'
                : 'Drop files here, or click to choose'}
            </Text>
            <Text size="sm" c="dimmed">
              X-rays (DICOM), images, PDFs and other documents. Each file is stored encrypted.
            </Text>
          </div>
        </Group>
      </Dropzone>
      {uploads.length > 0 && (
        <Stack gap={6} aria-label="Uploads" role="list">
          {uploads.map((u) => (
            <div key={u.key} role="listitem">
              <Group justify="space-between" gap="xs">
                <Text size="sm" truncate style={{ flex: 1 }}>
                  {u.name} ({formatSize(u.size)})
                </Text>
                <Text size="xs" c={u.state === 'failed' ? 'red.9' : 'dimmed'}>
                  {u.state === 'uploading'
                    ? `${u.progress}%`
                    : u.state === 'done'
                      ? 'Uploaded'
                      : 'Failed'}
                </Text>
                {u.state === 'uploading' && (
                  <Button size="compact-xs" variant="subtle" onClick={u.abort}>
                    Cancel
                  </Button>
                )}
              </Group>
              <Progress
                value={u.progress}
                color={u.state === 'failed' ? 'red' : u.state === 'done' ? 'teal' : 'blue'}
                aria-label={`Upload of ${u.name}`}
                size="sm"
              />
              {u.message && (
                <Text size="xs" c="red.9" role="alert">
                  {u.message}
                </Text>
              )}
            </div>
          ))}
        </Stack>
      )}
    </Stack>
  );
}
