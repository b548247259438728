package store

import "context"

// scanCount is the COUNT of each SCAN step of a comparison: the keys of one
// page are compared together.
const scanCount = 1000

// Compare walks the namespace of both stores page by page, with bounded
// memory, and calls visit with each page of keys and their summaries on
// both sides: first every key of the local side, then the keys only the
// remote side has (their local summary is of type "none"). visit sees equal
// keys too; Summary.Same tells them apart. It is the core of resync and of
// "redisrepl verify".
//
// before, if set, is called with each page's keys before their summaries
// are read.
func Compare(ctx context.Context, local, remote *Store, before func(keys [][]byte), visit func(keys [][]byte, local, remote []Summary) error) error {
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
			go func() { rs, rerr = remote.Summaries(ctx, keys); close(done) }()
			ls, err := local.Summaries(ctx, keys)
			<-done
			if err != nil {
				return err
			}
			if rerr != nil {
				return rerr
			}
			// Big keys are digested a chunk at a time on both sides at once.
			done = make(chan struct{})
			go func() { rerr = remote.CompleteDigests(ctx, keys, rs); close(done) }()
			err = local.CompleteDigests(ctx, keys, ls)
			<-done
			if err != nil {
				return err
			}
			if rerr != nil {
				return rerr
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
				rs, err := remote.Summaries(ctx, only)
				if err != nil {
					return err
				}
				if err := remote.CompleteDigests(ctx, only, rs); err != nil {
					return err
				}
				ls := make([]Summary, len(only))
				for i := range ls {
					ls[i] = Summary{Type: "none", Digest: NoneDigest}
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
