// Register a patient with owners and identifiers (microchip, MRN, …), then open the chart.
import { useState } from 'react';
import {
  ActionIcon,
  Button,
  Fieldset,
  Group,
  Select,
  SimpleGrid,
  Stack,
  TagsInput,
  TextInput,
  Title,
} from '@mantine/core';
import { IconPlus, IconTrash } from '@tabler/icons-react';
import { useNavigate } from 'react-router';
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
  name: string;
  email: string;
  phone: string;
}
interface IdentifierForm {
  system: string;
  value: string;
}

export function RegisterPatientPage() {
  const navigate = useNavigate();
  const [name, setName] = useState('');
  const [species, setSpecies] = useState<string | null>('canine');
  const [breed, setBreed] = useState('');
  const [sex, setSex] = useState<string | null>(null);
  const [birthDate, setBirthDate] = useState('');
  const [alerts, setAlerts] = useState<string[]>([]);
  const [owners, setOwners] = useState<OwnerForm[]>([{ name: '', email: '', phone: '' }]);
  const [identifiers, setIdentifiers] = useState<IdentifierForm[]>([
    { system: 'microchip', value: '' },
  ]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: React.SyntheticEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const patient = await api<Patient>('POST', '/patients', {
        body: {
          name: name.trim(),
          species,
          ...(breed.trim() ? { breed: breed.trim() } : {}),
          ...(sex ? { sex } : {}),
          ...(birthDate ? { birthDate } : {}),
          alerts,
          owners: owners
            .filter((o) => o.name.trim())
            .map((o) => ({
              name: o.name.trim(),
              ...(o.email.trim() ? { email: o.email.trim() } : {}),
              ...(o.phone.trim() ? { phone: o.phone.trim() } : {}),
            })),
          identifiers: identifiers
            .filter((i) => i.value.trim())
            .map((i) => ({ system: i.system, value: i.value.trim() })),
        },
      });
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
        Register a patient
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
                    maxLength={200}
                    value={owner.name}
                    onChange={(e) => {
                      setOwner(index, { name: e.currentTarget.value });
                    }}
                    style={{ flex: '1 1 180px' }}
                  />
                  <TextInput
                    label="Owner email"
                    type="email"
                    value={owner.email}
                    onChange={(e) => {
                      setOwner(index, { email: e.currentTarget.value });
                    }}
                    style={{ flex: '1 1 180px' }}
                  />
                  <TextInput
                    label="Owner phone"
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
                    aria-label="Remove this owner"
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
          <ErrorAlert error={error} title="The patient was not registered" />
          <Group>
            <Button type="submit" loading={busy}>
              Register patient
            </Button>
          </Group>
        </Stack>
      </form>
    </Stack>
  );
}
