package link

import (
	"context"
	"fmt"
)

// Compare walks the namespace of both stores page by page, with bounded
// memory, and calls visit with each page of keys and their summaries on
// both sides: first every key of the local side, then the keys only the
// remote side has (their local summary is of type "none"). visit sees equal
// keys too; Summary.Same tells them apart. It is the core of resync and of
// "redisrepl verify".
func Compare(ctx context.Context, local, remote *Store, visit func(keys [][]byte, local, remote []Summary) error) error {
	return compare(ctx, local, remote, nil, visit)
}

// compare is Compare with a hook called with each page's keys before their
// summaries are read.
func compare(ctx context.Context, local, remote *Store, before func(keys [][]byte), visit func(keys [][]byte, local, remote []Summary) error) error {
	cursor := "0"
	for {
		next, keys, err := local.Scan(ctx, cursor, scanCount)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if before != nil {
				before(keys)
			}
			var (
				rs   []Summary
				rerr error
				done = make(chan struct{})
			)
			go func() { rs, rerr = remote.SummariesSplit(ctx, keys); close(done) }()
			ls, err := local.Summaries(ctx, keys)
			<-done
			if err != nil {
				return err
			}
			if rerr != nil {
				return rerr
			}
			if err := completeDigests(ctx, local, keys, ls); err != nil {
				return err
			}
			if err := completeDigests(ctx, remote, keys, rs); err != nil {
				return err
			}
			if err := visit(keys, ls, rs); err != nil {
				return err
			}
		}
		if next == "0" {
			break
		}
		cursor = next
	}
	cursor = "0"
	for {
		next, keys, err := remote.Scan(ctx, cursor, scanCount)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			exists, err := local.Exists(ctx, keys)
			if err != nil {
				return err
			}
			var only [][]byte
			for i, k := range keys {
				if !exists[i] {
					only = append(only, k)
				}
			}
			if len(only) > 0 {
				if before != nil {
					before(only)
				}
				rs, err := remote.SummariesSplit(ctx, only)
				if err != nil {
					return err
				}
				if err := completeDigests(ctx, remote, only, rs); err != nil {
					return err
				}
				ls := make([]Summary, len(only))
				for i := range ls {
					ls[i] = Summary{Type: "none", Digest: noneDigestHex}
				}
				if err := visit(only, ls, rs); err != nil {
					return err
				}
			}
		}
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

// SummariesSplit is Summaries in as many requests as MaxRequest needs.
func (s *Store) SummariesSplit(ctx context.Context, keys [][]byte) ([]Summary, error) {
	out := make([]Summary, 0, len(keys))
	for _, part := range splitKeys(keys, s.MaxRequest) {
		sums, err := s.Summaries(ctx, part)
		if err != nil {
			return nil, err
		}
		out = append(out, sums...)
	}
	if len(out) != len(keys) {
		return nil, fmt.Errorf("%s: %d summaries for %d keys", s.Name, len(out), len(keys))
	}
	return out, nil
}
