package ipam

import (
	"context"
	"errors"
	"fmt"

	"github.com/brindle-net/brindle/datastore"
)

// EtcdStore is the Store over the datastore's raw key-value API (etcd mod
// revisions are the Store's revisions).
type EtcdStore struct {
	raw datastore.RawKV
}

// NewEtcdStore returns a Store backed by c.
func NewEtcdStore(c *datastore.Client) *EtcdStore {
	return &EtcdStore{raw: c.Raw()}
}

// mapErr translates the datastore's sentinels into the Store's, keeping the
// original (which names the key) in the chain.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, datastore.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, datastore.ErrAlreadyExists):
		return fmt.Errorf("%w: %w", ErrExists, err)
	case errors.Is(err, datastore.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// Get implements Store.
func (s *EtcdStore) Get(ctx context.Context, key string) ([]byte, int64, error) {
	kv, err := s.raw.Get(ctx, key)
	if err != nil {
		return nil, 0, mapErr(err)
	}
	return kv.Value, kv.ModRevision, nil
}

// Create implements Store.
func (s *EtcdStore) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := s.raw.Create(ctx, key, value)
	return rev, mapErr(err)
}

// Update implements Store. An update of a key that has gone is a conflict
// (the Store contract), not ErrNotFound.
func (s *EtcdStore) Update(ctx context.Context, key string, value []byte, expectedRev int64) (int64, error) {
	rev, err := s.raw.Update(ctx, key, value, expectedRev)
	if errors.Is(err, datastore.ErrNotFound) {
		return 0, fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return rev, mapErr(err)
}

// Delete implements Store.
func (s *EtcdStore) Delete(ctx context.Context, key string, expectedRev int64) error {
	if expectedRev <= 0 {
		return fmt.Errorf("delete %s: a revision is required", key)
	}
	return mapErr(s.raw.Delete(ctx, key, expectedRev))
}

// List implements Store.
func (s *EtcdStore) List(ctx context.Context, prefix string) ([]KV, error) {
	kvs, _, err := s.raw.List(ctx, prefix)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]KV, len(kvs))
	for i, kv := range kvs {
		out[i] = KV{Key: kv.Key, Value: kv.Value, Revision: kv.ModRevision}
	}
	return out, nil
}

// Txn implements TxnStore.
func (s *EtcdStore) Txn(ctx context.Context, conds []TxnCond, puts []TxnPut) (bool, error) {
	cs := make([]datastore.Cond, len(conds))
	for i, c := range conds {
		cs[i] = datastore.Cond{Key: c.Key, ModRevision: c.Revision}
	}
	ops := make([]datastore.RawOp, len(puts))
	for i, p := range puts {
		ops[i] = datastore.RawOp{Key: p.Key, Value: p.Value}
	}
	ok, _, err := s.raw.Txn(ctx, cs, ops)
	return ok, mapErr(err)
}
