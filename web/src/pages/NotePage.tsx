// One note. A draft opens in the editor, saved as you type (autosave); a final note shows its
// text, its addenda under it, a form to add one, and its history with the changes marked.
import { useEffect, useRef, useState } from 'react';
import {
  Anchor,
  Badge,
  Button,
  Card,
  Checkbox,
  Group,
  Modal,
  Stack,
  Text,
  Textarea,
  TextInput,
  Title,
} from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { diffWords } from 'diff';
import { Link, useNavigate, useParams, useSearchParams } from 'react-router';
import { api, ApiError, messageOf } from '../api';
import { capabilitiesFor } from '../capabilities';
import { ErrorAlert } from '../components/ErrorAlert';
import { NoteCard } from '../components/NoteCard';
import { formatDateTime, NOTE_KIND_LABEL } from '../format';
import { emptySoap, SOAP_SECTIONS, soapToText, textToSoap, type Soap } from '../soap';
import type { Note, NoteKind, NoteRevision, Patient } from '../types';

const AUTOSAVE_MS = 800;

function Diff({ before, after }: { before: string; after: string }) {
  return (
    <Text size="sm" className="note-body" component="div">
      {diffWords(before, after).map((part, i) =>
        part.added ? (
          <ins key={i} className="diff-added">
            {part.value}
          </ins>
        ) : part.removed ? (
          <del key={i} className="diff-removed">
            {part.value}
          </del>
        ) : (
          <span key={i}>{part.value}</span>
        ),
      )}
    </Text>
  );
}

const CHANGE_LABEL: Record<string, string> = {
  created: 'Created',
  edited: 'Edited',
  finalized: 'Finalized',
  addendum: 'Addendum added',
  released: 'Released to the owner',
};

function HistoryDialog({ noteId, onClose }: { noteId: string; onClose: () => void }) {
  const history = useQuery({
    queryKey: ['note-history', noteId],
    queryFn: () => api<{ items: NoteRevision[] }>('GET', `/notes/${noteId}/history`),
  });
  const items = history.data?.items ?? [];
  return (
    <Modal opened onClose={onClose} title="History of this note" size="xl">
      <Stack>
        <ErrorAlert error={history.error} />
        {items.map((rev, i) => {
          const previous = items[i - 1];
          return (
            <Card key={rev.version} withBorder padding="sm">
              <Group justify="space-between">
                <Text fw={600} size="sm">
                  Version {rev.version}: {CHANGE_LABEL[rev.change] ?? rev.change}
                </Text>
                <Text size="xs" c="dimmed">
                  {formatDateTime(rev.at)}
                </Text>
              </Group>
              {previous && previous.body !== rev.body ? (
                <Diff before={previous.body} after={rev.body} />
              ) : !previous ? (
                <Text size="sm" className="note-body">
                  {rev.body}
                </Text>
              ) : (
                <Text size="xs" c="dimmed">
                  Text unchanged.
                </Text>
              )}
            </Card>
          );
        })}
        <Text size="xs" c="dimmed">
          Added words are <ins className="diff-added">marked like this</ins>, removed words{' '}
          <del className="diff-removed">like this</del>.
        </Text>
      </Stack>
    </Modal>
  );
}

type SaveState =
  | { kind: 'idle' }
  | { kind: 'saving' }
  | { kind: 'saved'; at: Date }
  | { kind: 'failed'; error: unknown };

function Editor({ patient, note }: { patient: Patient; note: Note | null }) {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [params] = useSearchParams();
  const kind = (note?.kind ?? params.get('kind') ?? 'soap') as NoteKind;
  const can = capabilitiesFor(patient);
  const [title, setTitle] = useState(note?.title ?? '');
  const [soap, setSoap] = useState<Soap>(() =>
    note && kind === 'soap' ? textToSoap(note.body) : emptySoap(),
  );
  const [text, setText] = useState(note && kind !== 'soap' ? note.body : '');
  const [forOwner, setForOwner] = useState(note?.visibility === 'owner');
  const [sharedWith, setSharedWith] = useState<string[]>(note?.sharedWith ?? []);
  const [save, setSave] = useState<SaveState>({ kind: 'idle' });
  const saved = useRef<{ id: string; version: number } | null>(
    note ? { id: note.id, version: note.version } : null,
  );
  const [hasDraft, setHasDraft] = useState(note !== null);
  const dirty = useRef(false);
  const inFlight = useRef<Promise<void> | null>(null);

  const body = kind === 'soap' ? soapToText(soap) : text.trim();
  const payload = {
    kind,
    title: title.trim() || null,
    body,
    visibility: forOwner ? 'owner' : 'internal',
    sharedWith,
  };

  async function persist(): Promise<void> {
    if (!body) return;
    dirty.current = false;
    setSave({ kind: 'saving' });
    try {
      if (!saved.current) {
        const created = await api<Note>('POST', `/patients/${patient.id}/notes`, { body: payload });
        saved.current = { id: created.id, version: created.version };
        setHasDraft(true);
        // The draft now has an address: keep it in place so a reload comes back here.
        void navigate(`/notes/${created.id}`, { replace: true });
      } else {
        const updated = await api<Note>('PATCH', `/notes/${saved.current.id}`, {
          body: payload,
          headers: { 'if-match': `"${saved.current.version}"` },
        });
        saved.current = { id: updated.id, version: updated.version };
      }
      setSave({ kind: 'saved', at: new Date() });
      void queryClient.invalidateQueries({ queryKey: ['notes', patient.id] });
    } catch (err) {
      dirty.current = true;
      setSave({ kind: 'failed', error: err });
    }
  }

  const saveNow = async () => {
    await inFlight.current;
    if (dirty.current) {
      inFlight.current = persist();
      await inFlight.current;
    }
  };

  // Autosave: a moment after the last keystroke, one save at a time.
  const payloadKey = JSON.stringify(payload);
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    dirty.current = true;
    const timer = setTimeout(() => void saveNow(), AUTOSAVE_MS);
    return () => {
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [payloadKey]);

  function finalize() {
    modals.openConfirmModal({
      title: 'Finalize this note?',
      children: (
        <Text size="sm">
          A final note is locked: it can no longer be edited, only amended with addenda. Its history
          stays visible.
        </Text>
      ),
      labels: { confirm: 'Finalize', cancel: 'Keep editing' },
      onConfirm: () => {
        void (async () => {
          try {
            await saveNow();
            if (!saved.current)
              throw new ApiError(
                400,
                'invalid',
                'Write something in the note before finalizing it.',
                null,
              );
            await api<Note>('POST', `/notes/${saved.current.id}/finalize`, {
              headers: { 'if-match': `"${saved.current.version}"` },
            });
            notifications.show({ color: 'teal', message: 'Note finalized.' });
            await queryClient.invalidateQueries({ queryKey: ['note', saved.current.id] });
            await queryClient.invalidateQueries({ queryKey: ['notes', patient.id] });
          } catch (err) {
            notifications.show({
              color: 'red',
              title: 'The note was not finalized',
              message: messageOf(err),
            });
          }
        })();
      },
    });
  }

  return (
    <Stack maw={860}>
      <Group justify="space-between">
        <Title order={1} size="h2">
          {NOTE_KIND_LABEL[kind] ?? 'Note'} note for {patient.name}
        </Title>
        <Badge color="yellow" variant="light">
          Draft
        </Badge>
      </Group>
      <TextInput
        label="Title"
        maxLength={300}
        value={title}
        onChange={(e) => {
          setTitle(e.currentTarget.value);
        }}
      />
      {kind === 'soap' ? (
        SOAP_SECTIONS.map((section) => (
          <Textarea
            key={section.key}
            label={section.heading}
            description={section.hint}
            autosize
            minRows={3}
            value={soap[section.key]}
            onChange={(e) => {
              setSoap({ ...soap, [section.key]: e.currentTarget.value });
            }}
          />
        ))
      ) : (
        <Textarea
          label={
            kind === 'behavior'
              ? 'Behaviour observed'
              : kind === 'training'
                ? 'Training session'
                : 'Note'
          }
          autosize
          minRows={8}
          value={text}
          onChange={(e) => {
            setText(e.currentTarget.value);
          }}
        />
      )}
      {can.isStaff && (
        <Group>
          <Checkbox
            label="The owner may see this note once released"
            checked={forOwner}
            onChange={(e) => {
              setForOwner(e.currentTarget.checked);
            }}
          />
          <Checkbox.Group label="Also share with" value={sharedWith} onChange={setSharedWith}>
            <Group mt={4}>
              <Checkbox value="trainer" label="Trainers" />
              <Checkbox value="walker" label="Walkers" />
              <Checkbox value="carer" label="Carers" />
            </Group>
          </Checkbox.Group>
        </Group>
      )}
      <Group justify="space-between">
        <Text
          size="sm"
          c={save.kind === 'failed' ? 'red.9' : 'dimmed'}
          role="status"
          aria-live="polite"
        >
          {save.kind === 'saving'
            ? 'Saving…'
            : save.kind === 'saved'
              ? `Draft saved at ${save.at.toLocaleTimeString()}`
              : save.kind === 'failed'
                ? `Not saved: ${messageOf(save.error)}`
                : hasDraft
                  ? 'Draft saved'
                  : 'Start typing: the draft is saved as you write.'}
        </Text>
        <Group>
          <Button
            component={Link}
            to={`/patients/${patient.id}`}
            variant="default"
            onClick={() => void saveNow()}
          >
            Back to the chart
          </Button>
          {can.finalize && (
            <Button onClick={finalize} disabled={!body}>
              Finalize…
            </Button>
          )}
        </Group>
      </Group>
    </Stack>
  );
}

function FinalNote({ patient, note }: { patient: Patient; note: Note }) {
  const queryClient = useQueryClient();
  const can = capabilitiesFor(patient);
  const [addendum, setAddendum] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [showHistory, setShowHistory] = useState(false);

  const refresh = async () => {
    await queryClient.invalidateQueries({ queryKey: ['note', note.id] });
    await queryClient.invalidateQueries({ queryKey: ['notes', patient.id] });
  };

  async function addAddendum(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api('POST', `/notes/${note.id}/addenda`, { body: { body: addendum.trim() } });
      setAddendum('');
      notifications.show({ color: 'teal', message: 'Addendum added under the note.' });
      await refresh();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  async function release() {
    try {
      await api('POST', `/notes/${note.id}/release`);
      notifications.show({
        color: 'teal',
        message: 'Released: the owner can see this note in their portal.',
      });
      await refresh();
    } catch (err) {
      notifications.show({ color: 'red', title: 'Not released', message: messageOf(err) });
    }
  }

  async function releaseAddendum(addendumId: string) {
    try {
      await api('POST', `/notes/${note.id}/addenda/${addendumId}/release`);
      notifications.show({
        color: 'teal',
        message: 'Released: the owner can see this addendum in their portal.',
      });
      await refresh();
    } catch (err) {
      notifications.show({ color: 'red', title: 'Not released', message: messageOf(err) });
    }
  }

  return (
    <Stack maw={860}>
      <Group justify="space-between">
        <Title order={1} size="h2">
          {note.title ?? `${NOTE_KIND_LABEL[note.kind] ?? ''} note`}
        </Title>
        <Group>
          <Button
            variant="default"
            onClick={() => {
              setShowHistory(true);
            }}
          >
            History
          </Button>
          {can.release && note.visibility === 'owner' && !note.releaseAt && (
            <Button onClick={() => void release()}>Release to owner</Button>
          )}
        </Group>
      </Group>
      <Anchor component={Link} to={`/patients/${patient.id}`} size="sm">
        ← {patient.name}’s chart
      </Anchor>
      <NoteCard
        note={note}
        {...(can.release ? { onReleaseAddendum: (id: string) => void releaseAddendum(id) } : {})}
      />
      {can.writeNotes && (
        <form onSubmit={(event) => void addAddendum(event)}>
          <Stack gap="xs">
            <Textarea
              label="Add an addendum"
              description="The note itself stays as it was finalized; the addendum is shown under it with its time."
              autosize
              minRows={3}
              value={addendum}
              onChange={(e) => {
                setAddendum(e.currentTarget.value);
              }}
            />
            <ErrorAlert error={error} />
            <Button type="submit" loading={busy} disabled={!addendum.trim()} w="fit-content">
              Add addendum
            </Button>
          </Stack>
        </form>
      )}
      {showHistory && (
        <HistoryDialog
          noteId={note.id}
          onClose={() => {
            setShowHistory(false);
          }}
        />
      )}
    </Stack>
  );
}

export function NotePage() {
  const { id, patientId } = useParams();
  const note = useQuery({
    queryKey: ['note', id],
    queryFn: () => api<Note>('GET', `/notes/${id ?? ''}`),
    enabled: id !== undefined,
    staleTime: 0,
  });
  const pid = patientId ?? note.data?.patientId;
  const patient = useQuery({
    queryKey: ['patient', pid],
    queryFn: () => api<Patient>('GET', `/patients/${pid ?? ''}`),
    enabled: pid !== undefined,
  });

  const error = note.error ?? patient.error;
  if (error) return <ErrorAlert error={error} title="This note could not be opened" />;
  if (!patient.data || (id !== undefined && !note.data)) return <Text c="dimmed">Loading…</Text>;
  if (note.data && note.data.status === 'final')
    return <FinalNote patient={patient.data} note={note.data} />;
  // A new note (no id yet) or a draft; keyed so switching notes starts a fresh editor.
  return <Editor key={note.data?.id ?? 'new'} patient={patient.data} note={note.data ?? null} />;
}
