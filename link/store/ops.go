package store

import "context"

// ops are the whole-key operations of one side, the seam between a Store
// and how it talks to its Redis. evalOps (eval.go) runs Lua scripts;
// plainOps (plain_*.go) uses plain commands where a hub
// refuses scripts. Both return the same results for the same data: one
// conformance suite (store_test.go) runs against each.
type ops interface {
	// read reads keys whole, as State lays them out: a key over lim's
	// MaxElems or MaxBytes is Big (Elems empty, BigSize set, Digest ""),
	// keys past lim.MaxBatchBytes of values are Deferred.
	read(ctx context.Context, keys [][]byte, lim Limits) ([]State, error)
	// summaries is read without the contents: type, expiry and digest ("" for
	// a key over the limits).
	summaries(ctx context.Context, keys [][]byte, lim Limits) ([]Summary, error)
	// scan is one step of SCAN over the keys matching match.
	scan(ctx context.Context, cursor string, match []byte, count int) (next string, keys [][]byte, err error)
	// exists says which keys exist.
	exists(ctx context.Context, keys [][]byte) ([]bool, error)
	// apply writes states, each atomically; all keys must start with
	// prefix, which is checked before anything is written. States with
	// Expect are written only over that digest; skipped are the indexes of
	// those that were not (where the implementation can check it). A mark
	// (WriteMark) is published in the same atomic step after the writes
	// where the implementation can: marked says whether it was.
	apply(ctx context.Context, prefix []byte, states []State, mark []byte) (marked bool, skipped []int, err error)

	// chunk reads one chunk of a big key, from cursor ("0" to start; "-"
	// for a stream). Its Next is "" at the end.
	chunk(ctx context.Context, key []byte, ty, cursor string, count int) (Chunk, error)
	// hashChunk is chunk's element hashes, as the digest combines them:
	// in order for ordered types, summed for unordered ones.
	hashChunk(ctx context.Context, key []byte, ty, cursor string, count int) (HashChunk, error)
	// stringHash is the element hash of a string key of at most max bytes,
	// "" when it is longer.
	stringHash(ctx context.Context, key []byte, max int64) (string, error)
	// stage adds elems (laid out as in State) to the staging key tmp of
	// type ty, and gives it the staging TTL.
	stage(ctx context.Context, prefix, tmp []byte, ty string, elems [][]byte) error
	// finish renames the staging key tmp over key in one step, expiring at
	// exp (0 = never); lastID is a stream's last-generated-id.
	finish(ctx context.Context, prefix, tmp, key []byte, exp int64, lastID string) error
}

var (
	_ ops = evalOps{}
	_ ops = plainOps{}
)

// Chunk is one chunk of a big key's elements, laid out as in State.
type Chunk struct {
	Next   string // cursor of the next chunk; "" at the end
	LastID string // a stream's last-generated-id
	Elems  [][]byte
}

// HashChunk is one chunk of a big key's element hashes.
type HashChunk struct {
	Next   string   // cursor of the next chunk; "" at the end
	LastID string   // a stream's hash of its last-generated-id
	Hashes []string // ordered types: one per element, in order
	// Unordered types (hash, set): the sum of the chunk's element hashes,
	// and the key's element count (HLEN, SCARD) when the chunk was read.
	Sum  elemSum
	Card int64
}
