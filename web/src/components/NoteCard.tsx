// A note in the chart's timeline: kind, status, body (SOAP sections headed), device results with
// abnormal values marked, and addenda under the original.
import { Badge, Button, Card, Group, Stack, Text, Title } from '@mantine/core';
import { Link } from 'react-router';
import { formatDateTime, NOTE_KIND_LABEL } from '../format';
import { SOAP_SECTIONS, textToSoap } from '../soap';
import type { Note } from '../types';
import { ObservationsTable } from './ObservationsTable';

function NoteBody({ note }: { note: Note }) {
  if (note.kind === 'soap') {
    const soap = textToSoap(note.body);
    return (
      <Stack gap={6}>
        {SOAP_SECTIONS.filter((s) => soap[s.key]).map((s) => (
          <div key={s.key}>
            <Text size="xs" fw={700} tt="uppercase" c="dimmed">
              {s.heading}
            </Text>
            <Text size="sm" className="note-body">
              {soap[s.key]}
            </Text>
          </div>
        ))}
      </Stack>
    );
  }
  return (
    <Text size="sm" className="note-body" lineClamp={note.kind === 'result' ? 4 : 12}>
      {note.body}
    </Text>
  );
}

export function NoteCard({
  note,
  onReleaseAddendum,
}: {
  note: Note;
  /** Offered on addenda of an owner note not yet released (staff who may release). */
  onReleaseAddendum?: (addendumId: string) => void;
}) {
  const abnormal = note.result?.abnormal === true;
  return (
    <Card
      withBorder
      padding="md"
      component="article"
      aria-label={`${NOTE_KIND_LABEL[note.kind]} note`}
    >
      <Group justify="space-between" mb="xs" wrap="wrap">
        <Group gap="xs">
          <Badge variant="light" color={note.kind === 'result' ? 'grape' : 'teal'}>
            {NOTE_KIND_LABEL[note.kind] ?? note.kind}
          </Badge>
          {note.status === 'draft' ? (
            <Badge color="yellow" variant="light">
              Draft
            </Badge>
          ) : (
            <Badge color="gray" variant="light">
              Final
            </Badge>
          )}
          {note.visibility === 'owner' && (
            <Badge color="blue" variant="light">
              {note.releaseAt ? 'Released to owner' : 'For the owner'}
            </Badge>
          )}
          {abnormal && (
            <Badge color="red" variant="filled">
              Abnormal
            </Badge>
          )}
        </Group>
        <Text size="xs" c="dimmed">
          {note.kind === 'result' ? '' : `${note.authorName} · `}
          {formatDateTime(note.createdAt)}
        </Text>
      </Group>
      <Title order={3} size="h5" mb={4}>
        <Link to={`/notes/${note.id}`} style={{ color: 'inherit' }}>
          {note.title ?? `${NOTE_KIND_LABEL[note.kind] ?? 'Note'} note`}
        </Link>
      </Title>
      <NoteBody note={note} />
      {note.result && note.result.observations.length > 0 && (
        <Stack gap={4} mt="sm">
          <Text size="xs" c="dimmed">
            {note.result.source} · {note.result.kind}
          </Text>
          <ObservationsTable observations={note.result.observations} />
        </Stack>
      )}
      {note.addenda.length > 0 && (
        <Stack
          gap={6}
          mt="sm"
          pl="md"
          style={{ borderLeft: '3px solid var(--mantine-color-teal-3)' }}
        >
          {note.addenda.map((a) => (
            <div key={a.id}>
              <Group gap="xs">
                <Text size="xs" fw={700} c="dimmed">
                  Addendum · {a.authorName} · {formatDateTime(a.createdAt)}
                </Text>
                {note.visibility === 'owner' && a.releaseAt && (
                  <Badge color="blue" variant="light" size="xs">
                    Released to owner
                  </Badge>
                )}
                {note.visibility === 'owner' && !a.releaseAt && onReleaseAddendum && (
                  <Button
                    size="compact-xs"
                    variant="light"
                    onClick={() => {
                      onReleaseAddendum(a.id);
                    }}
                  >
                    Release addendum to owner
                  </Button>
                )}
              </Group>
              <Text size="sm" className="note-body">
                {a.body}
              </Text>
            </div>
          ))}
        </Stack>
      )}
    </Card>
  );
}
