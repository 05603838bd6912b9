package ipam

import (
	"context"
	"errors"
)

// Errors a Store returns. Implementations wrap them (errors.Is must hold).
var (
	// ErrNotFound: Get or Delete of a key that does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrExists: Create of a key that already exists.
	ErrExists = errors.New("key already exists")
	// ErrConflict: Update or Delete whose expected revision is not the key's
	// current revision, including an Update of a key that no longer exists.
	ErrConflict = errors.New("revision conflict")
)

// KV is one key, its value and its modification revision.
type KV struct {
	Key      string
	Value    []byte
	Revision int64
}

// Store is the small key-value interface the allocator needs. Every write is
// conditional: Create only if absent, Update and Delete only at the expected
// revision. Revisions are positive and change on every write of a key (etcd's
// mod revision satisfies this).
type Store interface {
	// Get returns the value and revision of key, or ErrNotFound.
	Get(ctx context.Context, key string) (value []byte, revision int64, err error)
	// Create writes key only if it does not exist (else ErrExists) and
	// returns the new revision.
	Create(ctx context.Context, key string, value []byte) (revision int64, err error)
	// Update writes key only if its revision is expectedRev (else
	// ErrConflict) and returns the new revision.
	Update(ctx context.Context, key string, value []byte, expectedRev int64) (revision int64, err error)
	// Delete removes key only if its revision is expectedRev: ErrNotFound if
	// it is already gone, ErrConflict if it changed.
	Delete(ctx context.Context, key string, expectedRev int64) error
	// List returns every key under prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]KV, error)
}

// retryable reports whether a write failed only because another writer got
// there first, so re-reading and trying again may succeed.
func retryable(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrExists)
}
