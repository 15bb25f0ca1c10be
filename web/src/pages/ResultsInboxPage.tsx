// The results inbox: device and lab results the server could not match to a patient, for staff to
// put in the right chart (with suggested patients) or discard with a reason.
import { useState } from 'react';
import type { SubmitEvent } from 'react';
import {
  Badge,
  Button,
  Card,
  Center,
  Group,
  Loader,
  Modal,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Textarea,
  Title,
} from '@mantine/core';
import { modals } from '@mantine/modals';
import { notifications } from '@mantine/notifications';
import { IconSearch } from '@tabler/icons-react';
import { useMutation, useQueries, useQueryClient } from '@tanstack/react-query';
import { api, query } from '../api';
import { LoadMore, usePagedList } from '../paged';
import { ErrorAlert } from '../components/ErrorAlert';
import { ObservationsTable } from '../components/ObservationsTable';
import { usePatientSearch } from '../components/PatientSearch';
import {
  formatDate,
  formatDateTime,
  IDENTIFIER_LABEL,
  IDENTIFIER_SYSTEMS,
  speciesLabel,
} from '../format';
import type { Identifier, Observation, Page, Patient } from '../types';

/** GET /integrations/unmatched item (UnmatchedResult in integrations.routes.ts). */
interface UnmatchedResult {
  id: string;
  source: string;
  kind: string;
  receivedAt: string;
  identifiers: Identifier[];
  patient: { name?: string; species?: string; ownerSurname?: string; birthDate?: string };
  observations: Observation[];
  abnormal: boolean;
  version: number;
}

const UNMATCHED_KEY = ['unmatched-results'] as const;
const MAX_SUGGESTIONS = 5;

const KIND_LABEL: Record<string, string> = {
  lab: 'Lab',
  screening: 'Screening',
  imaging: 'Imaging',
  other: 'Other',
};

const sameText = (a: string | null | undefined, b: string | null | undefined) =>
  !!a && !!b && a.trim().toLowerCase() === b.trim().toLowerCase();

const ownerSurnameMatches = (patient: Patient, surname: string | undefined) =>
  !!surname &&
  patient.owners.some((owner) =>
    owner.name.toLowerCase().split(/\s+/).includes(surname.trim().toLowerCase()),
  );

export function ResultsInboxPage() {
  const results = usePagedList<UnmatchedResult>(UNMATCHED_KEY, '/integrations/unmatched');
  const items = results.items;

  return (
    <Stack gap="md">
      <Title order={1} size="h2">
        Results inbox
      </Title>
      <Text c="dimmed" size="sm">
        Results your devices and labs sent that Caretrail could not match to a patient. Put each one
        in the right chart, or discard it if it does not belong to any of your patients.
      </Text>
      {results.isPending && (
        <Center py="xl">
          <Loader role="status" aria-label="Loading results" />
        </Center>
      )}
      <ErrorAlert error={results.error} title="The results inbox could not be loaded" />
      {results.isSuccess && items.length === 0 && (
        <Card withBorder padding="lg">
          <Text>
            No results are waiting: everything sent by your devices is in a patient&apos;s chart.
          </Text>
        </Card>
      )}
      {items.map((result) => (
        <ResultCard key={result.id} result={result} />
      ))}
      <LoadMore list={results} />
    </Stack>
  );
}

function ResultCard({ result }: { result: UnmatchedResult }) {
  const queryClient = useQueryClient();
  const [discardOpen, setDiscardOpen] = useState(false);
  const kind = KIND_LABEL[result.kind] ?? result.kind;
  const heading = `${kind} result from ${result.source}`;
  const described = `${kind.toLowerCase()} result from ${result.source}`;

  const assign = useMutation({
    mutationFn: (patient: Patient) =>
      api('POST', `/integrations/unmatched/${result.id}/assign`, {
        body: { patientId: patient.id },
      }),
    onSuccess: async (_answer, patient) => {
      notifications.show({
        color: 'teal',
        title: 'Result filed',
        message: `The ${described} is now in ${patient.name}'s chart.`,
      });
      // The chart's cached notes and results are stale now, whatever keys its pages use.
      await Promise.all([
        queryClient.invalidateQueries({ queryKey: UNMATCHED_KEY }),
        queryClient.invalidateQueries({
          predicate: (cached) => cached.queryKey.includes(patient.id),
        }),
      ]);
    },
  });

  const confirmAssign = (patient: Patient) => {
    modals.openConfirmModal({
      title: `Put this result in ${patient.name}'s chart?`,
      children: (
        <Text size="sm">
          The {described}, received {formatDateTime(result.receivedAt)}, will be added to the chart
          of <strong>{patient.name}</strong> ({describePatient(patient)}). Check that this is the
          right animal: the result will be seen as part of its record.
        </Text>
      ),
      labels: { confirm: `Assign to ${patient.name}`, cancel: 'Cancel' },
      onConfirm: () => {
        assign.mutate(patient);
      },
    });
  };

  return (
    <Card withBorder padding="lg" component="section" aria-label={heading}>
      <Stack gap="md">
        <Group justify="space-between" align="flex-start">
          <div>
            <Title order={2} size="h4">
              {heading}
            </Title>
            <Text size="sm" c="dimmed">
              Received {formatDateTime(result.receivedAt)}
            </Text>
          </div>
          {result.abnormal && (
            <Badge color="red" variant="light">
              Has abnormal values
            </Badge>
          )}
        </Group>

        <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="md">
          <SentDetails result={result} />
          <Observations observations={result.observations} label={`Observations: ${heading}`} />
        </SimpleGrid>

        <Suggestions result={result} onAssign={confirmAssign} busy={assign.isPending} />
        <OtherPatient onAssign={confirmAssign} busy={assign.isPending} />

        <ErrorAlert error={assign.error} title="The result could not be assigned" />

        <Group justify="flex-end">
          <Button
            variant="outline"
            color="red"
            onClick={() => {
              setDiscardOpen(true);
            }}
          >
            Discard…
          </Button>
        </Group>
      </Stack>
      <DiscardModal
        result={result}
        described={described}
        opened={discardOpen}
        onClose={() => {
          setDiscardOpen(false);
        }}
      />
    </Card>
  );
}

function SentDetails({ result }: { result: UnmatchedResult }) {
  const sent = result.patient;
  const rows: [string, string][] = [
    ...result.identifiers.map((identifier): [string, string] => [
      IDENTIFIER_LABEL[identifier.system] ?? identifier.system,
      identifier.value,
    ]),
    ...(sent.name ? [['Name', sent.name] as [string, string]] : []),
    ...(sent.species ? [['Species', speciesLabel(sent.species)] as [string, string]] : []),
    ...(sent.ownerSurname ? [['Owner surname', sent.ownerSurname] as [string, string]] : []),
    ...(sent.birthDate ? [['Birth date', formatDate(sent.birthDate)] as [string, string]] : []),
  ];
  return (
    <div>
      <Title order={3} size="h6" mb={4}>
        What the device sent about the animal
      </Title>
      {rows.length === 0 ? (
        <Text size="sm" c="dimmed">
          Nothing: no identifier, name or owner came with this result.
        </Text>
      ) : (
        <Table withRowBorders={false} verticalSpacing={2} aria-label="Patient details sent">
          <Table.Tbody>
            {rows.map(([label, value], index) => (
              <Table.Tr key={`${label}-${index}`}>
                <Table.Th scope="row" fw={500} c="dimmed" w="40%">
                  {label}
                </Table.Th>
                <Table.Td>{value}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
    </div>
  );
}

function Observations({ observations, label }: { observations: Observation[]; label: string }) {
  return (
    <div>
      <Title order={3} size="h6" mb={4}>
        Observations
      </Title>
      <ObservationsTable observations={observations} label={label} />
    </div>
  );
}

interface Suggestion {
  patient: Patient;
  reasons: string[];
  score: number;
}

/** Candidates from the identifiers and the name/owner the device sent, best first. */
function Suggestions({
  result,
  onAssign,
  busy,
}: {
  result: UnmatchedResult;
  onAssign: (patient: Patient) => void;
  busy: boolean;
}) {
  const sent = result.patient;
  const searches = [
    ...result.identifiers.map((identifier) =>
      // The identifier filter only knows our systems; other systems' values are found by text.
      (IDENTIFIER_SYSTEMS as readonly string[]).includes(identifier.system)
        ? { identifier: `${identifier.system}|${identifier.value}` }
        : { q: identifier.value },
    ),
    ...(sent.name ? [{ q: sent.name }] : []),
    ...(sent.ownerSurname ? [{ q: sent.ownerSurname }] : []),
  ];
  const found = useQueries({
    queries: searches.map((params) => ({
      queryKey: ['patient-suggestions', params],
      queryFn: ({ signal }) =>
        api<Page<Patient>>('GET', `/patients${query({ ...params, limit: 10 })}`, { signal }),
    })),
  });

  const byId = new Map<string, Suggestion>();
  for (const answer of found)
    for (const patient of answer.data?.items ?? []) {
      if (byId.has(patient.id)) continue;
      byId.set(patient.id, rank(patient, result));
    }
  const suggestions = [...byId.values()]
    .sort((a, b) => b.score - a.score)
    .slice(0, MAX_SUGGESTIONS);
  const loading = found.some((answer) => answer.isPending);
  const failed = found.find((answer) => answer.error)?.error;

  return (
    <div>
      <Title order={3} size="h6" mb={4}>
        Suggested patients
      </Title>
      {searches.length === 0 && (
        <Text size="sm" c="dimmed">
          The device sent nothing to search by: find the patient below.
        </Text>
      )}
      {loading && searches.length > 0 && (
        <Loader size="sm" role="status" aria-label="Finding suggestions" />
      )}
      <ErrorAlert error={failed} title="Suggestions could not be loaded" />
      {!loading && searches.length > 0 && suggestions.length === 0 && !failed && (
        <Text size="sm" c="dimmed">
          No patient looks like a match. Search for the patient below, or discard the result.
        </Text>
      )}
      <Stack gap={6}>
        {suggestions.map(({ patient, reasons }) => (
          <PatientRow
            key={patient.id}
            patient={patient}
            note={reasons.join(' · ')}
            onAssign={onAssign}
            busy={busy}
          />
        ))}
      </Stack>
    </div>
  );
}

/** How closely a patient fits what the device sent; the reasons are shown to the person. */
function rank(patient: Patient, result: UnmatchedResult): Suggestion {
  const sent = result.patient;
  const reasons: string[] = [];
  // Being found by one of the searches at all is a weak sign.
  let score = 1;
  for (const identifier of result.identifiers)
    if (
      patient.identifiers.some(
        (own) =>
          own.value.replace(/[\s-]/g, '').toUpperCase() ===
          identifier.value.replace(/[\s-]/g, '').toUpperCase(),
      )
    ) {
      reasons.push(
        `Same ${(IDENTIFIER_LABEL[identifier.system] ?? identifier.system).toLowerCase()}`,
      );
      score += 100;
    }
  if (sameText(patient.name, sent.name)) {
    reasons.push('Same name');
    score += 10;
  }
  if (ownerSurnameMatches(patient, sent.ownerSurname)) {
    reasons.push('Same owner surname');
    score += 8;
  }
  if (sent.birthDate && patient.birthDate === sent.birthDate) {
    reasons.push('Same birth date');
    score += 5;
  }
  // Species alone matches half the practice: it only breaks ties.
  if (sameText(patient.species, sent.species)) {
    reasons.push('Same species');
    score += 2;
  }
  if (reasons.length === 0) reasons.push('Similar name or owner');
  return { patient, reasons, score };
}

function OtherPatient({ onAssign, busy }: { onAssign: (patient: Patient) => void; busy: boolean }) {
  const [text, setText] = useState('');
  const search = usePatientSearch(text);
  const searching = text.trim().length >= 2;
  const items = search.data?.items ?? [];

  return (
    <div>
      <TextInput
        label="Another patient"
        description="Search by name, owner, microchip or MRN"
        placeholder="At least 2 characters"
        leftSection={<IconSearch size={16} aria-hidden />}
        rightSection={
          search.isFetching ? <Loader size={14} role="status" aria-label="Searching" /> : null
        }
        value={text}
        autoComplete="off"
        onChange={(event) => {
          setText(event.currentTarget.value);
        }}
        maw={420}
      />
      {searching && (
        <Stack gap={6} mt="xs" aria-live="polite">
          <ErrorAlert error={search.error} title="The search did not work" />
          {search.isSuccess && items.length === 0 && (
            <Text size="sm" c="dimmed">
              No patient matches. Check the spelling or try the owner&apos;s name.
            </Text>
          )}
          {items.map((patient) => (
            <PatientRow key={patient.id} patient={patient} onAssign={onAssign} busy={busy} />
          ))}
        </Stack>
      )}
    </div>
  );
}

function describePatient(patient: Patient): string {
  return [
    speciesLabel(patient.species),
    patient.breed,
    patient.birthDate ? `born ${formatDate(patient.birthDate)}` : null,
    patient.owners[0] ? `owner ${patient.owners[0].name}` : null,
  ]
    .filter(Boolean)
    .join(', ');
}

function PatientRow({
  patient,
  note,
  onAssign,
  busy,
}: {
  patient: Patient;
  note?: string;
  onAssign: (patient: Patient) => void;
  busy: boolean;
}) {
  return (
    <Group justify="space-between" wrap="nowrap" gap="sm">
      <div>
        <Text size="sm" fw={600}>
          {patient.name}
        </Text>
        <Text size="xs" c="dimmed">
          {describePatient(patient)}
          {patient.identifiers[0]
            ? ` · ${IDENTIFIER_LABEL[patient.identifiers[0].system] ?? patient.identifiers[0].system} ${patient.identifiers[0].value}`
            : ''}
        </Text>
        {note && (
          <Text size="xs" c="teal.9">
            {note}
          </Text>
        )}
      </div>
      <Button
        size="xs"
        variant="light"
        disabled={busy}
        aria-label={`Assign to ${patient.name}`}
        onClick={() => {
          onAssign(patient);
        }}
      >
        Assign
      </Button>
    </Group>
  );
}

function DiscardModal({
  result,
  described,
  opened,
  onClose,
}: {
  result: UnmatchedResult;
  described: string;
  opened: boolean;
  onClose: () => void;
}) {
  const queryClient = useQueryClient();
  const [reason, setReason] = useState('');
  const discard = useMutation({
    mutationFn: (why: string) =>
      api('POST', `/integrations/unmatched/${result.id}/discard`, { body: { reason: why } }),
    onSuccess: async () => {
      notifications.show({
        color: 'teal',
        title: 'Result discarded',
        message: `The ${described} was discarded; the reason is in the audit trail.`,
      });
      close();
      await queryClient.invalidateQueries({ queryKey: UNMATCHED_KEY });
    },
  });
  // The server wants a reason of at least 3 characters.
  const valid = reason.trim().length >= 3;
  const close = () => {
    setReason('');
    discard.reset();
    onClose();
  };

  const submit = (event: SubmitEvent) => {
    event.preventDefault();
    if (valid) discard.mutate(reason.trim());
  };

  return (
    <Modal opened={opened} onClose={close} title="Discard this result?">
      <form onSubmit={submit}>
        <Stack gap="sm">
          <Text size="sm">
            The {described}, received {formatDateTime(result.receivedAt)}, will leave the inbox and
            will not reach any chart. Discard only results that belong to none of your patients (a
            test run, another practice&apos;s animal).
          </Text>
          <Textarea
            label="Why discard it?"
            description="Kept in the audit trail."
            required
            autosize
            minRows={2}
            maxLength={500}
            value={reason}
            onChange={(event) => {
              setReason(event.currentTarget.value);
            }}
            data-autofocus
          />
          <ErrorAlert error={discard.error} title="The result could not be discarded" />
          <Group justify="flex-end">
            <Button variant="default" onClick={close}>
              Cancel
            </Button>
            <Button type="submit" color="red" disabled={!valid} loading={discard.isPending}>
              Discard result
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}
