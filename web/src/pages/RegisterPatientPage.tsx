// Register a patient with owners and identifiers (microchip, MRN, …), or edit one; then the
// chart. Owners already on record are kept or removed here, not edited (they may own other
// animals too).
import { useState } from 'react';
import {
  ActionIcon,
  Button,
  Fieldset,
  Group,
  Loader,
  Select,
  SimpleGrid,
  Stack,
  TagsInput,
  TextInput,
  Title,
} from '@mantine/core';
import { IconPlus, IconTrash } from '@tabler/icons-react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Link, useNavigate, useParams } from 'react-router';
import { api } from '../api';
import { ErrorAlert } from '../components/ErrorAlert';
import {
  IDENTIFIER_LABEL,
  IDENTIFIER_SYSTEMS,
  SEX_LABEL,
  SEXES,
  SPECIES,
  speciesLabel,
} from '../format';
import type { Patient } from '../types';

interface OwnerForm {
  /** Set for an owner already on record. */
  id?: string;
  name: string;
  email: string;
  phone: string;
}
interface IdentifierForm {
  system: string;
  value: string;
}

export function RegisterPatientPage() {
  return <PatientForm existing={null} />;
}

export function EditPatientPage() {
  const { id = '' } = useParams();
  const patient = useQuery({
    queryKey: ['patient', id],
    queryFn: () => api<Patient>('GET', `/patients/${id}`),
  });
  if (patient.error)
    return <ErrorAlert error={patient.error} title="This patient could not be opened" />;
  if (!patient.data) return <Loader role="status" aria-label="Loading the patient" />;
  return <PatientForm key={patient.data.id} existing={patient.data} />;
}

function PatientForm({ existing }: { existing: Patient | null }) {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [name, setName] = useState(existing?.name ?? '');
  const [species, setSpecies] = useState<string | null>(existing?.species ?? 'canine');
  const [breed, setBreed] = useState(existing?.breed ?? '');
  const [sex, setSex] = useState<string | null>(existing?.sex ?? null);
  const [birthDate, setBirthDate] = useState(existing?.birthDate ?? '');
  const [alerts, setAlerts] = useState<string[]>(existing?.alerts ?? []);
  const [owners, setOwners] = useState<OwnerForm[]>(
    existing
      ? existing.owners.map((o) => ({
          id: o.id,
          name: o.name,
          email: o.email ?? '',
          phone: o.phone ?? '',
        }))
      : [{ name: '', email: '', phone: '' }],
  );
  const [identifiers, setIdentifiers] = useState<IdentifierForm[]>(
    existing ? existing.identifiers : [{ system: 'microchip', value: '' }],
  );
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        name: name.trim(),
        species,
        // An emptied field is cleared on an edit, and left out of a new patient.
        breed: breed.trim() || null,
        sex,
        birthDate: birthDate || null,
        alerts,
        owners: owners
          .filter((o) => o.id !== undefined || o.name.trim())
          .map((o) =>
            o.id !== undefined
              ? { id: o.id }
              : {
                  name: o.name.trim(),
                  ...(o.email.trim() ? { email: o.email.trim() } : {}),
                  ...(o.phone.trim() ? { phone: o.phone.trim() } : {}),
                },
          ),
        identifiers: identifiers
          .filter((i) => i.value.trim())
          .map((i) => ({ system: i.system, value: i.value.trim() })),
      };
      const patient = existing
        ? await api<Patient>('PATCH', `/patients/${existing.id}`, {
            body,
            headers: { 'if-match': `"${existing.version}"` },
          })
        : await api<Patient>('POST', '/patients', { body });
      queryClient.setQueryData(['patient', patient.id], patient);
      void navigate(`/patients/${patient.id}`);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  const setOwner = (index: number, patch: Partial<OwnerForm>) => {
    setOwners(owners.map((o, i) => (i === index ? { ...o, ...patch } : o)));
  };
  const setIdentifier = (index: number, patch: Partial<IdentifierForm>) => {
    setIdentifiers(identifiers.map((x, i) => (i === index ? { ...x, ...patch } : x)));
  };

  return (
    <Stack maw={760}>
      <Title order={1} size="h2">
        {existing ? `Edit ${existing.name}` : 'Register a patient'}
      </Title>
      <form onSubmit={(event) => void submit(event)}>
        <Stack>
          <Fieldset legend="Patient">
            <SimpleGrid cols={{ base: 1, sm: 2 }}>
              <TextInput
                label="Name"
                required
                maxLength={200}
                value={name}
                onChange={(e) => {
                  setName(e.currentTarget.value);
                }}
              />
              <Select
                label="Species"
                required
                allowDeselect={false}
                data={SPECIES.map((s) => ({ value: s, label: speciesLabel(s) }))}
                value={species}
                onChange={setSpecies}
                searchable
              />
              <TextInput
                label="Breed"
                maxLength={100}
                value={breed}
                onChange={(e) => {
                  setBreed(e.currentTarget.value);
                }}
              />
              <Select
                label="Sex"
                clearable
                data={SEXES.map((s) => ({ value: s, label: SEX_LABEL[s] ?? s }))}
                value={sex}
                onChange={setSex}
              />
              <TextInput
                label="Birth date"
                type="date"
                value={birthDate}
                onChange={(e) => {
                  setBirthDate(e.currentTarget.value);
                }}
              />
            </SimpleGrid>
            <TagsInput
              mt="sm"
              label="Alerts"
              description="Warnings everyone opening the chart must see, e.g. “Bites — muzzle”. Press Enter after each."
              maxLength={200}
              value={alerts}
              onChange={setAlerts}
              clearable
            />
          </Fieldset>

          <Fieldset legend="Identifiers">
            <Stack gap="xs">
              {identifiers.map((identifier, index) => (
                <Group key={index} align="flex-end" wrap="nowrap">
                  <Select
                    label="Kind"
                    allowDeselect={false}
                    data={IDENTIFIER_SYSTEMS.map((s) => ({
                      value: s,
                      label: IDENTIFIER_LABEL[s] ?? s,
                    }))}
                    value={identifier.system}
                    onChange={(value) => {
                      setIdentifier(index, { system: value ?? 'microchip' });
                    }}
                    w={170}
                  />
                  <TextInput
                    label={`${IDENTIFIER_LABEL[identifier.system] ?? 'Identifier'} number`}
                    maxLength={64}
                    value={identifier.value}
                    onChange={(e) => {
                      setIdentifier(index, { value: e.currentTarget.value });
                    }}
                    style={{ flex: 1 }}
                  />
                  <ActionIcon
                    variant="subtle"
                    color="red"
                    size="lg"
                    mb={2}
                    aria-label="Remove this identifier"
                    onClick={() => {
                      setIdentifiers(identifiers.filter((_, i) => i !== index));
                    }}
                  >
                    <IconTrash size={18} />
                  </ActionIcon>
                </Group>
              ))}
              <Button
                variant="subtle"
                leftSection={<IconPlus size={16} />}
                onClick={() => {
                  setIdentifiers([...identifiers, { system: 'mrn', value: '' }]);
                }}
                w="fit-content"
              >
                Add identifier
              </Button>
            </Stack>
          </Fieldset>

          <Fieldset legend="Owners">
            <Stack gap="xs">
              {owners.map((owner, index) => (
                <Group key={index} align="flex-end" wrap="wrap">
                  <TextInput
                    label="Owner name"
                    readOnly={owner.id !== undefined}
                    maxLength={200}
                    value={owner.name}
                    onChange={(e) => {
                      setOwner(index, { name: e.currentTarget.value });
                    }}
                    style={{ flex: '1 1 180px' }}
                  />
                  <TextInput
                    label="Owner email"
                    readOnly={owner.id !== undefined}
                    type="email"
                    value={owner.email}
                    onChange={(e) => {
                      setOwner(index, { email: e.currentTarget.value });
                    }}
                    style={{ flex: '1 1 180px' }}
                  />
                  <TextInput
                    label="Owner phone"
                    readOnly={owner.id !== undefined}
                    type="tel"
                    maxLength={50}
                    value={owner.phone}
                    onChange={(e) => {
                      setOwner(index, { phone: e.currentTarget.value });
                    }}
                    style={{ flex: '1 1 140px' }}
                  />
                  <ActionIcon
                    variant="subtle"
                    color="red"
                    size="lg"
                    mb={2}
                    aria-label={
                      owner.id !== undefined
                        ? `Remove ${owner.name} as an owner`
                        : 'Remove this owner'
                    }
                    onClick={() => {
                      setOwners(owners.filter((_, i) => i !== index));
                    }}
                  >
                    <IconTrash size={18} />
                  </ActionIcon>
                </Group>
              ))}
              <Button
                variant="subtle"
                leftSection={<IconPlus size={16} />}
                onClick={() => {
                  setOwners([...owners, { name: '', email: '', phone: '' }]);
                }}
                w="fit-content"
              >
                Add owner
              </Button>
            </Stack>
          </Fieldset>
          <ErrorAlert
            error={error}
            title={existing ? 'The changes were not saved' : 'The patient was not registered'}
          />
          <Group>
            <Button type="submit" loading={busy}>
              {existing ? 'Save changes' : 'Register patient'}
            </Button>
            {existing && (
              <Button component={Link} to={`/patients/${existing.id}`} variant="default">
                Cancel
              </Button>
            )}
          </Group>
        </Stack>
      </form>
    </Stack>
  );
}
