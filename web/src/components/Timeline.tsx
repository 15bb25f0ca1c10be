// The chart's timeline: notes, results, documents and images, newest first, filtered by kind,
// loading more as the reader scrolls. Notes and documents are two paged lists merged by id
// (ids are time-ordered): an item shows only once nothing newer can still arrive from the other.
import { useEffect, useRef, useState } from 'react';
import {
  Center,
  Loader,
  SegmentedControl,
  Stack,
  Switch,
  Text,
  Group,
  useMatches,
} from '@mantine/core';
import { usePagedList } from '../paged';
import type { CaretrailDocument, Note } from '../types';
import { DocumentCard } from './DocumentCard';
import { ErrorAlert } from './ErrorAlert';
import { ImageViewer, isDicom, isImage } from './ImageViewer';
import { NoteCard } from './NoteCard';

type Filter = 'all' | 'notes' | 'results' | 'documents' | 'images';
const PAGE = 20;

type Item =
  | { kind: 'note'; id: string; note: Note }
  | { kind: 'document'; id: string; doc: CaretrailDocument };

function keep(item: Item, filter: Filter): boolean {
  switch (filter) {
    case 'all':
      return true;
    case 'notes':
      return item.kind === 'note' && item.note.kind !== 'result';
    case 'results':
      return item.kind === 'note' && item.note.kind === 'result';
    case 'documents':
      return item.kind === 'document' && !isImage(item.doc) && !isDicom(item.doc);
    case 'images':
      return item.kind === 'document' && (isImage(item.doc) || isDicom(item.doc));
  }
}

/** The patient's notes, newest first, a page at a time (shared by the header and timeline). */
export function usePatientNotes(patientId: string) {
  return usePagedList<Note>(['notes', patientId], `/patients/${patientId}/notes`, { limit: PAGE });
}

export function Timeline({ patientId, canWrite }: { patientId: string; canWrite: boolean }) {
  const [filter, setFilter] = useState<Filter>('all');
  const [showDeleted, setShowDeleted] = useState(false);
  const [viewing, setViewing] = useState<CaretrailDocument | null>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  // The filter clips what does not fit: on a phone its five choices need the smaller size.
  const filterSize = useMatches({ base: 'xs', sm: 'sm' }, { getInitialValueInEffect: false });

  const notes = usePatientNotes(patientId);
  const documents = usePagedList<CaretrailDocument>(
    ['documents', patientId, showDeleted],
    `/patients/${patientId}/documents`,
    { limit: PAGE, includeDeleted: showDeleted || undefined },
    // Thumbnails are made in the background: look again while one is still on its way.
    { pollWhile: (docs) => docs.some((d) => d.preview.status === 'pending') },
  );

  const noteItems = notes.items;
  const docItems = documents.items;

  // The oldest id each list still might have something newer than: items older than that wait.
  const horizon = [
    notes.hasNextPage ? noteItems.at(-1)?.id : undefined,
    documents.hasNextPage ? docItems.at(-1)?.id : undefined,
  ]
    .filter((id): id is string => id !== undefined)
    .sort()
    .at(-1);

  const items: Item[] = [
    ...noteItems.map((note): Item => ({ kind: 'note', id: note.id, note })),
    ...docItems.map((doc): Item => ({ kind: 'document', id: doc.id, doc })),
  ]
    .filter((item) => horizon === undefined || item.id >= horizon)
    .sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const shown = items.filter((item) => keep(item, filter));

  const more = notes.hasNextPage || documents.hasNextPage;
  const fetching = notes.isFetchingNextPage || documents.isFetchingNextPage;

  useEffect(() => {
    const target = sentinel.current;
    if (!target) return;
    const observer = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting) || fetching) return;
      // Load from whichever list holds the horizon back.
      const lastNote = noteItems.at(-1)?.id;
      const lastDoc = docItems.at(-1)?.id;
      if (notes.hasNextPage && (!documents.hasNextPage || (lastNote ?? '') >= (lastDoc ?? '')))
        void notes.fetchNextPage();
      else if (documents.hasNextPage) void documents.fetchNextPage();
    });
    observer.observe(target);
    return () => {
      observer.disconnect();
    };
  }, [notes, documents, noteItems, docItems, fetching]);

  return (
    <Stack gap="sm">
      <Group justify="space-between" wrap="wrap">
        <SegmentedControl
          aria-label="Show in the timeline"
          size={filterSize}
          value={filter}
          onChange={(v) => {
            setFilter(v);
          }}
          data={[
            { value: 'all', label: 'All' },
            { value: 'notes', label: 'Notes' },
            { value: 'results', label: 'Results' },
            { value: 'documents', label: 'Documents' },
            { value: 'images', label: 'Images' },
          ]}
        />
        {canWrite && (
          <Switch
            label="Show deleted files"
            checked={showDeleted}
            onChange={(e) => {
              setShowDeleted(e.currentTarget.checked);
            }}
          />
        )}
      </Group>
      <ErrorAlert
        error={notes.error ?? documents.error}
        title="Part of the chart could not be loaded"
      />
      {(notes.isLoading || documents.isLoading) && (
        <Center p="lg">
          <Loader role="status" aria-label="Loading the timeline" />
        </Center>
      )}
      {!notes.isLoading && !documents.isLoading && shown.length === 0 && !more && (
        <Text c="dimmed">Nothing here yet{filter === 'all' ? '' : ' of this kind'}.</Text>
      )}
      <Stack gap="sm" component="section" aria-label="Timeline">
        {shown.map((item) =>
          item.kind === 'note' ? (
            <NoteCard key={item.id} note={item.note} />
          ) : (
            <DocumentCard key={item.id} doc={item.doc} canWrite={canWrite} onView={setViewing} />
          ),
        )}
      </Stack>
      <div ref={sentinel} aria-hidden style={{ height: 1 }} />
      {fetching && (
        <Center>
          <Loader size="sm" role="status" aria-label="Loading more" />
        </Center>
      )}
      {viewing && (
        <ImageViewer
          key={viewing.id}
          doc={viewing}
          onClose={() => {
            setViewing(null);
          }}
        />
      )}
    </Stack>
  );
}
