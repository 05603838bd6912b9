package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/brindle-net/brindle/api"
	clientv3 "go.etcd.io/etcd/client/v3"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Op is what a batch does with each of its objects.
type Op int

// Batch operations, matching brindlectl's verbs.
const (
	// OpCreate stores objects that must not exist yet.
	OpCreate Op = iota
	// OpReplace overwrites objects that must exist.
	OpReplace
	// OpApply creates or overwrites.
	OpApply
	// OpDelete removes objects that must exist.
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpReplace:
		return "replace"
	case OpApply:
		return "apply"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Action is what happened to one document, in kubectl's words.
type Action string

// Actions reported per document.
const (
	ActionCreated    Action = "created"
	ActionConfigured Action = "configured"
	ActionReplaced   Action = "replaced"
	ActionUnchanged  Action = "unchanged"
	ActionDeleted    Action = "deleted"
)

// Result is the outcome for one document of a batch.
type Result struct {
	// Index is the document's position in the batch (0-based).
	Index int
	// Kind, Namespace and Name identify the document.
	Kind, Namespace, Name string
	// Action says what was done.
	Action Action
	// Object is the stored object with its new resourceVersion, or for a
	// delete the object that was removed (nil if it did not decode).
	Object api.Object
}

// BatchError is the error of a batch that failed. Doc is the document at
// fault (0-based; -1 when the failure is not one document's, e.g. etcd
// unreachable). Written lists the documents committed before the failure:
// it is empty unless the batch was larger than one transaction.
type BatchError struct {
	Doc             int
	Kind, Namespace string
	Name            string
	Err             error
	Written         []Result
}

func (e *BatchError) Error() string {
	if e.Doc < 0 {
		return e.Err.Error()
	}
	id := e.Name
	if e.Namespace != "" {
		id = e.Namespace + "/" + e.Name
	}
	return fmt.Sprintf("document %d (%s %q): %v", e.Doc+1, e.Kind, id, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

// item is one key written by a batch. A document normally has one; a
// Kubernetes NetworkPolicy has two: the original and its translation.
type item struct {
	doc     int
	derived bool // the translation of a Kubernetes NetworkPolicy
	kind    api.KindInfo
	key     string
	obj     api.Object // nil for deletes
	userRev int64      // resourceVersion the caller gave, 0 if none

	// Planned from the current state.
	curRev int64  // mod revision read, 0 if absent
	value  []byte // what to put; nil with skip or for deletes
	action Action
	skip   bool // nothing to write (unchanged, or a derived key already gone)
	prev   api.Object
}

// WriteBatch performs op on every object. Everything is checked first
// (keys, duplicates, existence, resourceVersions); nothing is written if
// any document fails those checks. If the whole batch fits in one etcd
// transaction (Config.MaxTxnOps and MaxTxnBytes) it is written atomically.
// Otherwise it is written in consecutive transactions, each holding whole
// documents, and if one fails the returned *BatchError lists exactly which
// documents were committed.
//
// Each write is a compare-and-swap on the revision read (or, if the object
// carries one, on its resourceVersion). When a swap on a revision the batch
// read itself loses a race, that transaction is planned again and retried;
// a swap on a caller's resourceVersion that no longer matches is
// ErrConflict.
//
// A Kubernetes NetworkPolicy (*networkingv1.NetworkPolicy) is stored as
// itself plus its translation, the NetworkPolicy knp.default.<name>, in the
// same transaction; deleting it deletes both.
func (c *Client) WriteBatch(ctx context.Context, op Op, objs []api.Object) ([]Result, error) {
	items, err := expand(op, objs)
	if err != nil {
		return nil, err
	}
	if err := c.plan(ctx, op, items); err != nil {
		return nil, err
	}
	chunks := c.chunk(items)
	var written []Result
	for ci, ch := range chunks {
		if c.beforeChunk != nil {
			if err := c.beforeChunk(ci); err != nil {
				return nil, partial(objs, ch[0].doc, err, written)
			}
		}
		if err := c.commitChunk(ctx, op, ch); err != nil {
			var be *BatchError
			if errors.As(err, &be) {
				be.Written = written
				return nil, be
			}
			return nil, partial(objs, -1, err, written)
		}
		written = append(written, results(ch)...)
	}
	return written, nil
}

func partial(objs []api.Object, doc int, err error, written []Result) *BatchError {
	be := docError(objs, doc, err)
	be.Written = written
	return be
}

func docError(objs []api.Object, doc int, err error) *BatchError {
	be := &BatchError{Doc: doc, Err: err}
	if doc >= 0 && doc < len(objs) && objs[doc] != nil {
		o := objs[doc]
		be.Kind = o.GetObjectKind().GroupVersionKind().Kind
		if k, ok := api.KindOf(o); ok {
			be.Kind = k.Kind
		}
		be.Namespace, be.Name = o.GetNamespace(), o.GetName()
	}
	return be
}

// expand turns documents into items and rejects duplicates.
func expand(op Op, objs []api.Object) ([]*item, error) {
	items := make([]*item, 0, len(objs))
	seen := make(map[string]int, len(objs))
	add := func(it *item) error {
		if first, dup := seen[it.key]; dup {
			return docError(objs, it.doc, fmt.Errorf("%w: the same resource as document %d", ErrInvalid, first+1))
		}
		seen[it.key] = it.doc
		items = append(items, it)
		return nil
	}
	for i, obj := range objs {
		if obj == nil {
			return nil, docError(objs, i, fmt.Errorf("%w: nil object", ErrInvalid))
		}
		k, key, err := KeyOf(obj)
		if err != nil {
			return nil, docError(objs, i, err)
		}
		rev, err := ParseRevision(obj.GetResourceVersion())
		if err != nil {
			return nil, docError(objs, i, err)
		}
		it := &item{doc: i, kind: k, key: key, userRev: rev}
		if op != OpDelete {
			it.obj = obj
		}
		if err := add(it); err != nil {
			return nil, err
		}
		np, isK8s := obj.(*networkingv1.NetworkPolicy)
		if !isK8s {
			continue
		}
		der := &item{doc: i, derived: true, kind: mustKind("NetworkPolicy")}
		if op == OpDelete {
			der.key, err = Key(der.kind, np.Namespace, api.K8sNetworkPolicyPrefix+np.Name)
		} else {
			var tr *api.NetworkPolicy
			tr, err = api.TranslateNetworkPolicy(np)
			if err == nil {
				// The translation is ours: it gets its own identity, and
				// its revision is the one read, not the original's.
				tr.UID, tr.ResourceVersion, tr.CreationTimestamp = "", "", metav1.Time{}
				der.obj = tr
				_, der.key, err = KeyOf(tr)
			}
		}
		if err != nil {
			return nil, docError(objs, i, err)
		}
		if err := add(der); err != nil {
			return nil, err
		}
	}
	return items, nil
}

func mustKind(name string) api.KindInfo {
	k, ok := api.LookupKind(name)
	if !ok {
		panic("datastore: api registry lacks kind " + name)
	}
	return k
}

// readCurrent fills curRev and prev for every item, reading in
// transactions of at most MaxTxnOps gets.
func (c *Client) readCurrent(ctx context.Context, items []*item) error {
	for start := 0; start < len(items); start += c.cfg.MaxTxnOps {
		end := min(start+c.cfg.MaxTxnOps, len(items))
		ops := make([]clientv3.Op, 0, end-start)
		for _, it := range items[start:end] {
			ops = append(ops, clientv3.OpGet(it.key))
		}
		resp, err := c.etcd.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("reading current state: %w", err)
		}
		for i, r := range resp.Responses {
			it := items[start+i]
			it.curRev, it.prev = 0, nil
			if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
				it.curRev = kvs[0].ModRevision
				if obj, err := decode(it.kind, kvs[0].Value, kvs[0].ModRevision); err == nil {
					it.prev = obj
				} else {
					c.log.Warn("stored value does not decode", "key", it.key, "err", err)
				}
			}
		}
	}
	return nil
}

// plan reads the current state and decides each item's write.
func (c *Client) plan(ctx context.Context, op Op, items []*item) error {
	if err := c.readCurrent(ctx, items); err != nil {
		return &BatchError{Doc: -1, Err: err}
	}
	if c.afterRead != nil {
		c.afterRead()
	}
	for _, it := range items {
		if err := planItem(op, it); err != nil {
			return &BatchError{Doc: it.doc, Kind: it.kind.Kind, Namespace: namespaceOf(it), Name: nameOf(it), Err: err}
		}
	}
	return nil
}

func namespaceOf(it *item) string {
	_, ns, _, _ := ParseKey(it.key)
	return ns
}

func nameOf(it *item) string {
	_, _, n, _ := ParseKey(it.key)
	return n
}

func planItem(op Op, it *item) error {
	exists := it.curRev != 0
	it.skip = false
	if op == OpCreate && it.userRev != 0 {
		return fmt.Errorf("%w: metadata.resourceVersion: must not be set on create", ErrInvalid)
	}
	if it.userRev != 0 && !it.derived {
		if !exists {
			return notFound(it.key)
		}
		if it.userRev != it.curRev {
			return fmt.Errorf("%s: stored revision is %d: %w", it.key, it.curRev, ErrConflict)
		}
	}
	switch op {
	case OpDelete:
		if !exists {
			if it.derived {
				it.skip = true
				return nil
			}
			return notFound(it.key)
		}
		it.action = ActionDeleted
		return nil
	case OpCreate:
		if exists {
			return alreadyExists(it.key)
		}
	case OpReplace:
		if !exists && !it.derived {
			return notFound(it.key)
		}
	}
	// Write the object with the metadata of the stored one; the caller's
	// object is not touched until the write commits.
	obj := it.obj
	rv := obj.GetResourceVersion()
	obj.SetResourceVersion("")
	defer obj.SetResourceVersion(rv)
	if !exists {
		stampNew(obj)
		v, err := encode(obj)
		if err != nil {
			return err
		}
		it.value, it.action = v, ActionCreated
		return nil
	}
	fillTypeMeta(obj)
	if it.prev != nil {
		if obj.GetUID() == "" {
			obj.SetUID(it.prev.GetUID())
		}
		if ts := obj.GetCreationTimestamp(); ts.IsZero() {
			obj.SetCreationTimestamp(it.prev.GetCreationTimestamp())
		}
	}
	v, err := encode(obj)
	if err != nil {
		return err
	}
	it.value = v
	it.action = ActionConfigured
	if op == OpReplace {
		it.action = ActionReplaced
	}
	if it.prev != nil {
		if old, err := encode(it.prev); err == nil && bytes.Equal(old, v) {
			it.skip, it.action = true, ActionUnchanged
		}
	}
	return nil
}

// chunk splits items into transactions that fit the configured limits,
// never splitting one document's items.
func (c *Client) chunk(items []*item) [][]*item {
	var chunks [][]*item
	var cur []*item
	ops, size := 0, 0
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].doc == items[i].doc {
			j++
		}
		doc := items[i:j]
		dOps, dSize := 0, 0
		for _, it := range doc {
			dOps++
			dSize += 2*len(it.key) + len(it.value) + 64
		}
		if len(cur) > 0 && (ops+dOps > c.cfg.MaxTxnOps || size+dSize > c.cfg.MaxTxnBytes) {
			chunks = append(chunks, cur)
			cur, ops, size = nil, 0, 0
		}
		cur = append(cur, doc...)
		ops += dOps
		size += dSize
		i = j
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

// maxRaceRetries bounds how often a chunk is re-planned after losing a
// compare-and-swap race on a revision the batch read itself.
const maxRaceRetries = 5

// commitChunk writes one transaction, re-planning it when another writer
// changed one of its keys since it was read.
func (c *Client) commitChunk(ctx context.Context, op Op, ch []*item) error {
	for attempt := 0; ; attempt++ {
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, it := range ch {
			if it.skip {
				// Still guard it: an unchanged verdict holds only if
				// the key was not changed meanwhile.
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(it.key), "=", it.curRev))
				continue
			}
			if it.curRev == 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(it.key), "=", 0))
			} else {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(it.key), "=", it.curRev))
			}
			if op == OpDelete {
				ops = append(ops, clientv3.OpDelete(it.key))
			} else {
				ops = append(ops, clientv3.OpPut(it.key, string(it.value)))
			}
		}
		resp, err := c.etcd.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("writing documents %d-%d: %w", ch[0].doc+1, ch[len(ch)-1].doc+1, err)
		}
		if resp.Succeeded {
			c.finish(op, ch, resp.Header.Revision)
			return nil
		}
		if attempt >= maxRaceRetries {
			return &BatchError{Doc: ch[0].doc, Kind: ch[0].kind.Kind, Namespace: namespaceOf(ch[0]), Name: nameOf(ch[0]),
				Err: fmt.Errorf("gave up after %d attempts: %w", attempt+1, ErrConflict)}
		}
		if err := c.plan(ctx, op, ch); err != nil {
			return err
		}
	}
}

// finish records the committed state on the caller's objects. (Their UID
// and creation timestamp were set when the batch was planned.)
func (c *Client) finish(op Op, ch []*item, rev int64) {
	for _, it := range ch {
		switch {
		case op == OpDelete:
			it.obj = it.prev
		case it.skip:
			it.obj.SetResourceVersion(FormatRevision(it.curRev))
			if it.prev != nil {
				it.obj.SetUID(it.prev.GetUID())
				it.obj.SetCreationTimestamp(it.prev.GetCreationTimestamp())
			}
		default:
			// planItem already gave the object its stored metadata.
			it.obj.SetResourceVersion(FormatRevision(rev))
		}
	}
}

// results turns a committed chunk into one Result per document.
func results(ch []*item) []Result {
	var out []Result
	for _, it := range ch {
		if it.derived {
			// The translation's change shows on its document.
			last := &out[len(out)-1]
			if last.Action == ActionUnchanged && it.action != ActionUnchanged && !it.skip {
				last.Action = ActionConfigured
			}
			continue
		}
		_, ns, name, _ := ParseKey(it.key)
		out = append(out, Result{Index: it.doc, Kind: it.kind.Kind, Namespace: ns, Name: name, Action: it.action, Object: it.obj})
	}
	return out
}
