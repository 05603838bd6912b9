package datastore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
)

// TestListManyPages lists a prefix bigger than several pages (read ahead
// and growing page sizes): every key once, in key order, at one revision,
// and nothing from outside the prefix.
func TestListManyPages(t *testing.T) {
	m := datastoretest.NewWith(t, datastoretest.Options{MaxTxnOps: 1000})
	raw := m.Client.Raw()
	ctx := context.Background()
	const n = 9001
	const prefix = datastore.IPAMPrefix + "handle/"
	for start := 0; start < n; start += 1000 {
		var ops []datastore.RawOp
		for i := start; i < min(start+1000, n); i++ {
			ops = append(ops, datastore.RawOp{Key: fmt.Sprintf("%sh%05d", prefix, i), Value: []byte(fmt.Sprint(i))})
		}
		if _, _, err := raw.Txn(ctx, nil, ops); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.Create(ctx, datastore.IPAMPrefix+"handle0", []byte("outside")); err != nil {
		t.Fatal(err)
	}
	kvs, rev, err := raw.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := m.Client.Revision(ctx); rev != cur {
		t.Errorf("listed at revision %d, store at %d", rev, cur)
	}
	if len(kvs) != n {
		t.Fatalf("listed %d keys, want %d", len(kvs), n)
	}
	for i, kv := range kvs {
		if want := fmt.Sprintf("%sh%05d", prefix, i); kv.Key != want || string(kv.Value) != fmt.Sprint(i) {
			t.Fatalf("key %d is %s=%q, want %s=%q", i, kv.Key, kv.Value, want, fmt.Sprint(i))
		}
	}
}
