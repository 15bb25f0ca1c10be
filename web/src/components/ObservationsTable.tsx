// A result's values: abnormal ones marked by colour, by their flag in text, and by the flag's
// meaning for screen readers (never by colour alone). N (normal) is not a mark.
import { Table, VisuallyHidden } from '@mantine/core';
import type { Observation } from '../types';

const FLAG_MEANING: Record<string, string> = {
  H: 'high',
  L: 'low',
  HH: 'critically high',
  LL: 'critically low',
  A: 'abnormal',
};

export const isAbnormal = (o: Observation) => o.flag !== undefined && o.flag !== 'N';

export function ObservationsTable({
  observations,
  label = 'Result values',
}: {
  observations: Observation[];
  label?: string;
}) {
  return (
    <Table.ScrollContainer minWidth={320}>
      <Table striped withTableBorder verticalSpacing={4} fz="sm" aria-label={label}>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Test</Table.Th>
            <Table.Th>Value</Table.Th>
            <Table.Th>Reference</Table.Th>
            <Table.Th>Flag</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {observations.map((o, index) => {
            const mark = isAbnormal(o) ? 'abnormal' : undefined;
            return (
              <Table.Tr key={`${o.code}-${index}`}>
                <Table.Td>{o.display ?? o.code}</Table.Td>
                <Table.Td className={mark}>
                  {String(o.value)}
                  {o.unit ? ` ${o.unit}` : ''}
                </Table.Td>
                <Table.Td>{o.referenceRange ?? ''}</Table.Td>
                <Table.Td className={mark}>
                  {mark && o.flag && (
                    <>
                      {o.flag}
                      <VisuallyHidden> ({FLAG_MEANING[o.flag] ?? 'abnormal'})</VisuallyHidden>
                    </>
                  )}
                </Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}
