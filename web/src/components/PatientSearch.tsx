// One box to find a patient by name, owner, or microchip/MRN: results while typing (debounced),
// arrows and Enter to pick one. The search text never goes into the page address.
import { useState } from 'react';
import { Combobox, Group, Loader, Text, TextInput, useCombobox } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { IconSearch } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { useNavigate } from 'react-router';
import { api, query } from '../api';
import { speciesLabel } from '../format';
import type { Page, Patient } from '../types';

export function usePatientSearch(text: string) {
  const [debounced] = useDebouncedValue(text.trim(), 250);
  return useQuery({
    queryKey: ['patient-search', debounced],
    queryFn: ({ signal }) =>
      api<Page<Patient>>('GET', `/patients${query({ q: debounced, limit: 10 })}`, { signal }),
    enabled: debounced.length >= 2,
  });
}

export function PatientSearch({ autoFocus = false }: { autoFocus?: boolean }) {
  const navigate = useNavigate();
  const combobox = useCombobox({
    onDropdownClose: () => {
      combobox.resetSelectedOption();
    },
  });
  const [text, setText] = useState('');
  const search = usePatientSearch(text);
  const items = search.data?.items ?? [];
  const open = text.trim().length >= 2;

  return (
    <Combobox
      store={combobox}
      onOptionSubmit={(id) => {
        setText('');
        combobox.closeDropdown();
        void navigate(`/patients/${id}`);
      }}
    >
      <Combobox.Target>
        <TextInput
          aria-label="Find a patient"
          placeholder="Find a patient: name, owner, microchip or MRN"
          leftSection={<IconSearch size={16} aria-hidden />}
          rightSection={
            search.isFetching ? <Loader size={14} role="status" aria-label="Searching" /> : null
          }
          value={text}
          autoFocus={autoFocus}
          autoComplete="off"
          onChange={(event) => {
            setText(event.currentTarget.value);
            combobox.openDropdown();
            combobox.updateSelectedOptionIndex();
          }}
          onFocus={() => {
            combobox.openDropdown();
          }}
          onBlur={() => {
            combobox.closeDropdown();
          }}
          onKeyDown={(event) => {
            // Enter with nothing highlighted opens the first match.
            if (event.key === 'Enter' && combobox.getSelectedOptionIndex() < 0 && items[0]) {
              event.preventDefault();
              combobox.selectFirstOption();
              combobox.clickSelectedOption();
            }
          }}
          w="100%"
        />
      </Combobox.Target>
      <Combobox.Dropdown hidden={!open}>
        <Combobox.Options aria-label="Matching patients">
          {search.isError && <Combobox.Empty>Search failed: try again.</Combobox.Empty>}
          {!search.isError && items.length === 0 && !search.isFetching && (
            <Combobox.Empty>
              No patient matches. Check the spelling or try the owner.
            </Combobox.Empty>
          )}
          {items.map((patient) => (
            <Combobox.Option value={patient.id} key={patient.id}>
              <Group justify="space-between" wrap="nowrap">
                <div>
                  <Text size="sm" fw={600}>
                    {patient.name}
                  </Text>
                  <Text size="xs" c="dimmed">
                    {speciesLabel(patient.species)}
                    {patient.breed ? `, ${patient.breed}` : ''}
                    {patient.owners[0] ? ` · ${patient.owners[0].name}` : ''}
                  </Text>
                </div>
                {patient.identifiers[0] && (
                  <Text size="xs" c="dimmed">
                    {patient.identifiers[0].value}
                  </Text>
                )}
              </Group>
            </Combobox.Option>
          ))}
        </Combobox.Options>
      </Combobox.Dropdown>
    </Combobox>
  );
}
