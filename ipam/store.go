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

// TxnStore is a Store that can also write several keys in one atomic step.
// When the Store offers it, AutoAssignMany writes a block and the handles
// of every address it took from it in one transaction.
type TxnStore interface {
	Store
	// Txn applies puts, all or nothing, if every condition holds. ok is
	// false, and nothing is written, when one does not; err is for
	// failures other than a condition.
	Txn(ctx context.Context, conds []TxnCond, puts []TxnPut) (ok bool, err error)
}

// TxnCond is a condition of a transaction: Key's revision must be
// Revision, where 0 means the key must not exist.
type TxnCond struct {
	Key      string
	Revision int64
}

// TxnPut is one write of a transaction.
type TxnPut struct {
	Key   string
	Value []byte
}
