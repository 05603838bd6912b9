package ipam

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// WriteOp names a kind of Store write, for fault injection.
type WriteOp string

// Store write kinds.
const (
	OpCreate WriteOp = "create"
	OpUpdate WriteOp = "update"
	OpDelete WriteOp = "delete"
	// OpTxn is a whole transaction (one write for fault injection; the
	// key is its first put's).
	OpTxn WriteOp = "txn"
)

// MemStore is an in-memory Store with the same conditional-write semantics as
// etcd (one global revision counter, bumped on every write). It is safe for
// concurrent use and is meant for tests, including other packages' tests.
//
// Fault injection: FailWrite makes the n-th write from now fail, before it is
// applied, so every failure path of a caller can be exercised in turn.
type MemStore struct {
	mu   sync.Mutex // guards everything below
	data map[string]memEntry
	rev  int64
	// writes counts writes attempted (successful or not) since the last
	// FailWrite; failAt is the 1-based write to fail (0 = none).
	writes  int
	failAt  int
	failErr error
	failed  bool
	hook    func(op WriteOp, key string) error
}

type memEntry struct {
	value []byte
	rev   int64
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{data: map[string]memEntry{}}
}

// FailWrite arranges for the n-th write attempted from now on (n >= 1) to fail
// with err without being applied. It also resets the write counter.
func (s *MemStore) FailWrite(n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes, s.failAt, s.failErr, s.failed = 0, n, err, false
}

// Failed reports whether the fault armed by FailWrite has fired.
func (s *MemStore) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Writes returns the number of writes attempted since the last FailWrite (or
// since creation).
func (s *MemStore) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// SetWriteHook installs a function called (under the store lock) before every
// write; a non-nil error fails the write without applying it. nil removes it.
func (s *MemStore) SetWriteHook(h func(op WriteOp, key string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

// fault is called with s.mu held before each write.
func (s *MemStore) fault(op WriteOp, key string) error {
	s.writes++
	if s.failAt > 0 && s.writes == s.failAt {
		s.failed = true
		return fmt.Errorf("memstore: injected fault on write %d (%s %s): %w", s.writes, op, key, s.failErr)
	}
	if s.hook != nil {
		return s.hook(op, key)
	}
	return nil
}

// Get implements Store.
func (s *MemStore) Get(_ context.Context, key string) ([]byte, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[key]
	if !ok {
		return nil, 0, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return clone(e.value), e.rev, nil
}

// Create implements Store.
func (s *MemStore) Create(_ context.Context, key string, value []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fault(OpCreate, key); err != nil {
		return 0, err
	}
	if _, ok := s.data[key]; ok {
		return 0, fmt.Errorf("create %s: %w", key, ErrExists)
	}
	s.rev++
	s.data[key] = memEntry{value: clone(value), rev: s.rev}
	return s.rev, nil
}

// Update implements Store.
func (s *MemStore) Update(_ context.Context, key string, value []byte, expectedRev int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fault(OpUpdate, key); err != nil {
		return 0, err
	}
	e, ok := s.data[key]
	if !ok || e.rev != expectedRev {
		return 0, fmt.Errorf("update %s at revision %d: %w", key, expectedRev, ErrConflict)
	}
	s.rev++
	s.data[key] = memEntry{value: clone(value), rev: s.rev}
	return s.rev, nil
}

// Delete implements Store.
func (s *MemStore) Delete(_ context.Context, key string, expectedRev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fault(OpDelete, key); err != nil {
		return err
	}
	e, ok := s.data[key]
	if !ok {
		return fmt.Errorf("delete %s: %w", key, ErrNotFound)
	}
	if e.rev != expectedRev {
		return fmt.Errorf("delete %s at revision %d: %w", key, expectedRev, ErrConflict)
	}
	s.rev++
	delete(s.data, key)
	return nil
}

// Txn implements TxnStore. It counts as one write for fault injection.
func (s *MemStore) Txn(_ context.Context, conds []TxnCond, puts []TxnPut) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ""
	if len(puts) > 0 {
		key = puts[0].Key
	}
	if err := s.fault(OpTxn, key); err != nil {
		return false, err
	}
	for _, c := range conds {
		e, ok := s.data[c.Key]
		if (c.Revision == 0 && ok) || (c.Revision != 0 && (!ok || e.rev != c.Revision)) {
			return false, nil
		}
	}
	s.rev++
	for _, p := range puts {
		s.data[p.Key] = memEntry{value: clone(p.Value), rev: s.rev}
	}
	return true, nil
}

// List implements Store.
func (s *MemStore) List(_ context.Context, prefix string) ([]KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []KV
	for k, e := range s.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, KV{Key: k, Value: clone(e.value), Revision: e.rev})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Put writes key unconditionally (test setup, e.g. planting a corrupt block).
// It does not count as a write for fault injection.
func (s *MemStore) Put(key string, value []byte) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.data[key] = memEntry{value: clone(value), rev: s.rev}
	return s.rev
}

// Remove deletes key unconditionally (test setup). It does not count as a
// write for fault injection.
func (s *MemStore) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	delete(s.data, key)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
