package datastore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RawKV is a small key-value API over arbitrary keys, for data that is not
// a v3 resource (Calico's IPAM blocks, affinities and handles under
// /calico/ipam/v2/). Every write is conditional on a mod revision, so
// read-modify-write loops are safe against concurrent writers:
//
//	for {
//		kv, err := raw.Get(ctx, key)            // value + ModRevision
//		... compute new value ...
//		_, err = raw.Update(ctx, key, v, kv.ModRevision)
//		if !errors.Is(err, ErrConflict) { break } // retry on conflict
//	}
type RawKV struct{ c *Client }

// Raw returns the raw key-value API of the client.
func (c *Client) Raw() RawKV { return RawKV{c: c} }

// KV is one stored key.
type KV struct {
	Key   string
	Value []byte
	// ModRevision is the revision of the key's last write: pass it to
	// Update, Delete or a Cond to make the write conditional on it.
	ModRevision int64
}

// Get reads key; a missing key is ErrNotFound.
func (r RawKV) Get(ctx context.Context, key string) (KV, error) {
	resp, err := r.c.etcd.Get(ctx, key)
	if err != nil {
		return KV{}, fmt.Errorf("reading %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, notFound(key)
	}
	e := resp.Kvs[0]
	return KV{Key: key, Value: e.Value, ModRevision: e.ModRevision}, nil
}

// Create writes key only if it does not exist (else ErrAlreadyExists) and
// returns the new revision.
func (r RawKV) Create(ctx context.Context, key string, value []byte) (int64, error) {
	ok, rev, err := r.Txn(ctx, []Cond{{Key: key, ModRevision: 0}}, []RawOp{{Key: key, Value: value}})
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, alreadyExists(key)
	}
	return rev, nil
}

// Update writes key only if its mod revision is still rev (else
// ErrConflict, or ErrNotFound if it is gone) and returns the new revision.
func (r RawKV) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if rev <= 0 {
		return 0, fmt.Errorf("%w: updating %s: a revision is required", ErrInvalid, key)
	}
	ok, newRev, err := r.Txn(ctx, []Cond{{Key: key, ModRevision: rev}}, []RawOp{{Key: key, Value: value}})
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, r.whyFailed(ctx, key, rev)
	}
	return newRev, nil
}

// Delete removes key. With rev > 0 only if its mod revision is still rev
// (else ErrConflict). A missing key is ErrNotFound.
func (r RawKV) Delete(ctx context.Context, key string, rev int64) error {
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if rev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := r.c.etcd.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	if !resp.Succeeded {
		return r.whyFailed(ctx, key, rev)
	}
	return nil
}

func (r RawKV) whyFailed(ctx context.Context, key string, rev int64) error {
	if _, err := r.Get(ctx, key); err != nil {
		return err
	}
	return conflict(key, rev)
}

// List returns every key under prefix in key order, read at one revision,
// and that revision.
func (r RawKV) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	var out []KV
	rev, err := r.c.listPages(ctx, prefix, 0, func(page []kv) error {
		for _, e := range page {
			out = append(out, KV{Key: e.key, Value: e.value, ModRevision: e.modRev})
		}
		return nil
	})
	return out, rev, err
}

// Cond is a precondition of a transaction: Key's mod revision must equal
// ModRevision, where 0 means the key must not exist.
type Cond struct {
	Key         string
	ModRevision int64
}

// RawOp is one write of a transaction: a put of Value, or a delete.
type RawOp struct {
	Key    string
	Value  []byte
	Delete bool
}

// Txn applies ops atomically if every condition holds. ok is false (and
// nothing is written) when one does not; rev is the store revision after
// the transaction. A transaction must fit etcd's limits (by default 128
// conditions and 128 ops, 1.5 MiB).
func (r RawKV) Txn(ctx context.Context, conds []Cond, ops []RawOp) (ok bool, rev int64, err error) {
	cmps := make([]clientv3.Cmp, len(conds))
	for i, c := range conds {
		if c.ModRevision == 0 {
			cmps[i] = clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0)
		} else {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.ModRevision)
		}
	}
	eops := make([]clientv3.Op, len(ops))
	for i, o := range ops {
		if o.Delete {
			eops[i] = clientv3.OpDelete(o.Key)
		} else {
			eops[i] = clientv3.OpPut(o.Key, string(o.Value))
		}
	}
	resp, err := r.c.etcd.Txn(ctx).If(cmps...).Then(eops...).Commit()
	if err != nil {
		return false, 0, fmt.Errorf("transaction on %d keys: %w", len(ops), err)
	}
	return resp.Succeeded, resp.Header.Revision, nil
}
