// A note in the chart's timeline: kind, status, body (SOAP sections headed), device results with
// abnormal values marked, and addenda under the original.
import { Badge, Card, Group, Stack, Table, Text, Title } from '@mantine/core';
import { Link } from 'react-router';
import { formatDateTime, NOTE_KIND_LABEL } from '../format';
import { SOAP_SECTIONS, textToSoap } from '../soap';
import type { Note, Observation } from '../types';

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

const FLAG_LABEL: Record<string, string> = {
  H: 'High',
  L: 'Low',
  HH: 'Critically high',
  LL: 'Critically low',
  A: 'Abnormal',
};

/** N is the normal flag: only the others mark a value (as the server's `abnormal` does). */
const isAbnormal = (o: Observation) => o.flag !== undefined && o.flag !== 'N';

export function ObservationsTable({ observations }: { observations: Observation[] }) {
  return (
    <Table.ScrollContainer minWidth={420}>
      <Table striped withTableBorder fz="sm" aria-label="Result values">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Test</Table.Th>
            <Table.Th>Value</Table.Th>
            <Table.Th>Reference</Table.Th>
            <Table.Th>Flag</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {observations.map((o, i) => (
            <Table.Tr key={`${o.code}-${i}`} className={isAbnormal(o) ? 'abnormal' : undefined}>
              <Table.Td>{o.display ?? o.code}</Table.Td>
              <Table.Td>
                {String(o.value)}
                {o.unit ? ` ${o.unit}` : ''}
              </Table.Td>
              <Table.Td>{o.referenceRange ?? ''}</Table.Td>
              <Table.Td>
                {o.flag && isAbnormal(o) ? `${o.flag} (${FLAG_LABEL[o.flag] ?? 'flagged'})` : ''}
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

export function NoteCard({ note }: { note: Note }) {
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
              <Text size="xs" fw={700} c="dimmed">
                Addendum · {a.authorName} · {formatDateTime(a.createdAt)}
              </Text>
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
