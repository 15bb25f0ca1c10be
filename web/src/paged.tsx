// The v1 API's cursor-paged lists ({ items, nextCursor }) as one hook, and the button that
// loads the next page.
import { useMemo } from 'react';
import { Button, Group } from '@mantine/core';
import { useInfiniteQuery, type QueryKey } from '@tanstack/react-query';
import { api, query } from './api';
import type { Page } from './types';

type Params = Record<string, string | number | boolean | undefined | null>;

/** How long a list is looked at again while `pollWhile` holds: 30 times, 2 s apart. */
const POLL_MS = 2000;
const MAX_POLLS = 30;

/**
 * A list read a page at a time from `path` with `params`; `items` holds every page loaded.
 * `pollWhile` re-reads it while something in it is still changing on the server (a thumbnail
 * being made), for a minute at most: every request is audited and keeps the session alive.
 */
export function usePagedList<T>(
  queryKey: QueryKey,
  path: string,
  params: Params = {},
  options: { pollWhile?: (items: T[]) => boolean } = {},
) {
  const { pollWhile } = options;
  const list = useInfiniteQuery({
    queryKey,
    queryFn: ({ pageParam, signal }) =>
      api<Page<T>>('GET', `${path}${query({ ...params, cursor: pageParam })}`, { signal }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
    refetchInterval: (q) =>
      pollWhile !== undefined &&
      q.state.dataUpdateCount < MAX_POLLS &&
      pollWhile((q.state.data?.pages ?? []).flatMap((p) => p.items))
        ? POLL_MS
        : false,
  });
  const items = useMemo(() => (list.data?.pages ?? []).flatMap((p) => p.items), [list.data]);
  return { ...list, items };
}

/** "Load more" under a paged list, while there is more. */
export function LoadMore({
  list,
  label = 'Load more',
}: {
  list: {
    hasNextPage: boolean;
    isFetchingNextPage: boolean;
    fetchNextPage: () => Promise<unknown>;
  };
  label?: string;
}) {
  if (!list.hasNextPage) return null;
  return (
    <Group justify="center">
      <Button
        variant="default"
        loading={list.isFetchingNextPage}
        onClick={() => void list.fetchNextPage()}
      >
        {label}
      </Button>
    </Group>
  );
}
