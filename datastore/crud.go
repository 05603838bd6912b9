package datastore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// stampNew fills the metadata a newly created object gets: a UID and a
// creation timestamp, unless the caller set them.
func stampNew(obj api.Object) {
	if obj.GetUID() == "" {
		obj.SetUID(types.UID(uuid.NewString()))
	}
	if ts := obj.GetCreationTimestamp(); ts.IsZero() {
		obj.SetCreationTimestamp(metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
	}
	fillTypeMeta(obj)
}

// fillTypeMeta sets apiVersion and kind when the caller left them empty.
func fillTypeMeta(obj api.Object) {
	if obj.GetObjectKind().GroupVersionKind().Kind != "" {
		return
	}
	if k, ok := api.KindOf(obj); ok {
		obj.GetObjectKind().SetGroupVersionKind(k.New().GetObjectKind().GroupVersionKind())
	}
}

// Create stores obj, failing with ErrAlreadyExists if its key exists. On
// success obj gets its UID, creation timestamp and resourceVersion (the new
// mod revision) and is returned.
func (c *Client) Create(ctx context.Context, obj api.Object) (api.Object, error) {
	_, key, err := KeyOf(obj)
	if err != nil {
		return nil, err
	}
	stampNew(obj)
	val, err := encode(obj)
	if err != nil {
		return nil, err
	}
	resp, err := c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", key, err)
	}
	if !resp.Succeeded {
		return nil, alreadyExists(key)
	}
	obj.SetResourceVersion(FormatRevision(resp.Header.Revision))
	return obj, nil
}

// Update replaces obj's stored value if, and only if, its stored mod
// revision still equals obj's resourceVersion (compare-and-swap). A stale
// resourceVersion gets ErrConflict; a missing key ErrNotFound; an empty
// resourceVersion is an error (use Apply for read-modify-write). On success
// obj's resourceVersion is the new revision.
func (c *Client) Update(ctx context.Context, obj api.Object) (api.Object, error) {
	_, key, err := KeyOf(obj)
	if err != nil {
		return nil, err
	}
	rev, err := ParseRevision(obj.GetResourceVersion())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if rev == 0 {
		return nil, fmt.Errorf("%w: %s: metadata.resourceVersion: required for an update", ErrInvalid, key)
	}
	fillTypeMeta(obj)
	val, err := encode(obj)
	if err != nil {
		return nil, err
	}
	resp, err := c.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(val))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("updating %s: %w", key, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return nil, notFound(key)
		}
		return nil, conflict(key, rev)
	}
	obj.SetResourceVersion(FormatRevision(resp.Header.Revision))
	return obj, nil
}

// Apply creates obj or, if it exists, overwrites it (keeping the stored
// UID and creation timestamp). If obj carries a resourceVersion the write
// is a compare-and-swap on it; otherwise Apply reads the current revision
// and swaps on that, retrying a few times if another writer wins the race.
func (c *Client) Apply(ctx context.Context, obj api.Object) (api.Object, error) {
	res, err := c.WriteBatch(ctx, OpApply, []api.Object{obj})
	if err != nil {
		return nil, err
	}
	return res[0].Object, nil
}

// Get reads one object. A missing key is ErrNotFound.
func (c *Client) Get(ctx context.Context, k api.KindInfo, namespace, name string) (api.Object, error) {
	key, err := Key(k, namespace, name)
	if err != nil {
		return nil, err
	}
	resp, err := c.etcd.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, notFound(key)
	}
	obj, err := decode(k, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return obj, nil
}

// Delete removes one object and returns what was deleted. With a non-empty
// resourceVersion the delete happens only if the stored revision equals it
// (else ErrConflict). A missing key is ErrNotFound.
func (c *Client) Delete(ctx context.Context, k api.KindInfo, namespace, name, resourceVersion string) (api.Object, error) {
	key, err := Key(k, namespace, name)
	if err != nil {
		return nil, err
	}
	rev, err := ParseRevision(resourceVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if rev != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := c.etcd.Txn(ctx).
		If(cmp).
		Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("deleting %s: %w", key, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return nil, notFound(key)
		}
		return nil, conflict(key, rev)
	}
	prev := resp.Responses[0].GetResponseDeleteRange().PrevKvs
	if len(prev) == 0 {
		return nil, notFound(key)
	}
	obj, err := decode(k, prev[0].Value, prev[0].ModRevision)
	if err != nil {
		// Deleted all the same: report the undecodable value.
		return nil, fmt.Errorf("%s deleted, but its value: %w", key, err)
	}
	return obj, nil
}

// ListOptions narrow a List.
type ListOptions struct {
	// Namespace limits a namespaced kind to one namespace; "" is all.
	Namespace string
	// NamePrefix keeps only objects whose name starts with it.
	NamePrefix string
}

// List returns the objects of kind k in key order, and the revision the
// list was read at. Values that fail to decode are logged and skipped.
func (c *Client) List(ctx context.Context, k api.KindInfo, opts ListOptions) ([]api.Object, int64, error) {
	if opts.Namespace != "" && !k.Namespaced {
		return nil, 0, fmt.Errorf("%w: %s is cluster-scoped; a namespace cannot be given", ErrInvalid, k.Kind)
	}
	prefix := KindPrefix(k, opts.Namespace)
	if opts.Namespace != "" || !k.Namespaced {
		prefix += opts.NamePrefix
	}
	var out []api.Object
	rev, err := c.listPages(ctx, prefix, 0, func(kvs []kv) error {
		for _, e := range kvs {
			kk, _, name, ok := ParseKey(e.key)
			if !ok || kk.Kind != k.Kind || !strings.HasPrefix(name, opts.NamePrefix) {
				continue
			}
			obj, err := decode(k, e.value, e.modRev)
			if err != nil {
				c.log.Warn("skipping undecodable value", "key", e.key, "err", err)
				continue
			}
			out = append(out, obj)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rev, nil
}

// kv is one key-value pair read from etcd.
type kv struct {
	key    string
	value  []byte
	modRev int64
}

// Large lists are read in pages, all at one revision, so memory and
// message sizes stay bounded. The first page has listPageSize keys and each
// next one twice as many, up to maxListPageSize: etcd counts every key to
// the end of the range on each paged read (for the response's Count), so
// many small pages of a big prefix cost time quadratic in its size.
const (
	listPageSize    = 2000
	maxListPageSize = 32000
)

// listPages reads every key under prefix at revision rev (0 = now), page by
// page, calling fn for each page in key order. The next page is fetched
// while fn handles the current one. It returns the revision read at.
func (c *Client) listPages(ctx context.Context, prefix string, rev int64, fn func([]kv) error) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		page []kv
		rev  int64
		err  error
	}
	pages := make(chan result, 1)
	go func() {
		defer close(pages)
		end := clientv3.GetPrefixRangeEnd(prefix)
		from := prefix
		for size := int64(listPageSize); ; size = min(2*size, maxListPageSize) {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(size)}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			resp, err := c.etcd.Get(ctx, from, opts...)
			if err != nil {
				select {
				case pages <- result{err: fmt.Errorf("listing %s: %w", prefix, err)}:
				case <-ctx.Done():
				}
				return
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			page := make([]kv, len(resp.Kvs))
			for i, e := range resp.Kvs {
				page[i] = kv{key: string(e.Key), value: e.Value, modRev: e.ModRevision}
			}
			select {
			case pages <- result{page: page, rev: rev}:
			case <-ctx.Done():
				return
			}
			if !resp.More || len(resp.Kvs) == 0 {
				return
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}()
	var readAt int64
	for r := range pages {
		if r.err != nil {
			return 0, r.err
		}
		readAt = r.rev
		if len(r.page) > 0 {
			if err := fn(r.page); err != nil {
				return 0, err
			}
		}
	}
	if readAt == 0 {
		return 0, fmt.Errorf("listing %s: %w", prefix, ctx.Err())
	}
	return readAt, nil
}
