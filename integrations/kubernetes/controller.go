package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersnetv1 "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// kind of a work key.
type kind uint8

const (
	kindPolicy kind = iota + 1
	kindNamespace
	kindServiceAccount
	kindPod
	kindNode
)

func (k kind) String() string {
	return [...]string{"", "networkpolicy", "namespace", "serviceaccount", "pod", "node"}[k]
}

// key is one unit of work: a Kubernetes object whose datastore
// counterpart must be brought in step, whether the object exists or not.
type key struct {
	kind      kind
	namespace string
	name      string
}

func (k key) String() string {
	if k.namespace == "" {
		return k.kind.String() + "/" + k.name
	}
	return k.kind.String() + "/" + k.namespace + "/" + k.name
}

// objKey identifies a datastore object in the cache.
type objKey struct {
	kind      string
	namespace string
	name      string
}

// podRef is a pod's namespace and name.
type podRef struct{ namespace, name string }

// Controller keeps the datastore in step with the Kubernetes API: both
// sides are watched into caches, every change on either side queues the
// affected Kubernetes object's key, and a worker compares what the
// datastore should hold for that key with what it holds and writes the
// difference. A full resync queues every key of both sides.
type Controller struct {
	cfg Config
	log *slog.Logger
	ds  *datastore.Client
	m   *metrics

	factory    informers.SharedInformerFactory
	policies   listersnetv1.NetworkPolicyLister
	namespaces listerscorev1.NamespaceLister
	accounts   listerscorev1.ServiceAccountLister
	pods       listerscorev1.PodLister
	nodes      listerscorev1.NodeLister
	synced     []cache.InformerSynced

	queue workqueue.TypedRateLimitingInterface[key]

	mu sync.Mutex
	// objs is the datastore's current state of the kinds the controller
	// owns (Profiles kns./ksa., NetworkPolicies knp., Kubernetes
	// NetworkPolicies, WorkloadEndpoints, Nodes). Guarded by mu; the
	// objects are never modified.
	objs map[objKey]api.Object
	// weps indexes Kubernetes WorkloadEndpoints by pod. Guarded by mu.
	weps map[podRef]map[string]*api.WorkloadEndpoint
	// dsRev is the datastore revision the cache reflects. Guarded by mu.
	dsRev int64
	// deletedNodes are Kubernetes nodes seen deleted in this run. Guarded
	// by mu.
	deletedNodes map[string]bool

	dsSynced  chan struct{} // closed once the datastore snapshot is in
	ready     atomic.Bool   // the first full resync is done
	standby   atomic.Bool   // waiting for the leader lease
	gap       atomic.Bool   // a watch error asks for a resync
	lastError atomic.Pointer[string]
}

// New builds a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:          cfg,
		log:          cfg.Logger,
		ds:           cfg.Datastore,
		m:            newMetrics(),
		objs:         map[objKey]api.Object{},
		weps:         map[podRef]map[string]*api.WorkloadEndpoint{},
		deletedNodes: map[string]bool{},
		dsSynced:     make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[key](20*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "brindle-kube-controllers"}),
	}
	c.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Kube, 0, informers.WithTransform(trim))
	watchErr := func(_ *cache.Reflector, err error) {
		c.m.watchErrors.Inc()
		c.log.Warn("kubernetes watch ended; resyncing after the relist", "err", err)
		c.gap.Store(true)
	}
	add := func(inf cache.SharedIndexInformer, k kind) {
		_ = inf.SetWatchErrorHandler(watchErr)
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { c.enqueueObj(k, o) },
			UpdateFunc: func(_, o any) { c.enqueueObj(k, o) },
			DeleteFunc: func(o any) { c.enqueueObj(k, o) },
		})
		c.synced = append(c.synced, inf.HasSynced)
	}
	if cfg.enabled(ControllerPolicy) {
		inf := c.factory.Networking().V1().NetworkPolicies()
		c.policies = inf.Lister()
		add(inf.Informer(), kindPolicy)
	}
	if cfg.enabled(ControllerNamespace) {
		inf := c.factory.Core().V1().Namespaces()
		c.namespaces = inf.Lister()
		add(inf.Informer(), kindNamespace)
	}
	if cfg.enabled(ControllerServiceAccount) {
		inf := c.factory.Core().V1().ServiceAccounts()
		c.accounts = inf.Lister()
		add(inf.Informer(), kindServiceAccount)
	}
	if cfg.enabled(ControllerWorkloadEndpoint) {
		inf := c.factory.Core().V1().Pods()
		c.pods = inf.Lister()
		add(inf.Informer(), kindPod)
	}
	if cfg.enabled(ControllerNode) {
		inf := c.factory.Core().V1().Nodes()
		c.nodes = inf.Lister()
		add(inf.Informer(), kindNode)
	}
	return c, nil
}

// trim drops what the controller never reads (managed fields, and for
// pods the status and most of the spec) so that the informer caches of
// large clusters stay small.
func trim(o any) (any, error) {
	if m, err := meta.Accessor(o); err == nil {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	if p, ok := o.(*corev1.Pod); ok {
		p.Status = corev1.PodStatus{}
		p.Spec = corev1.PodSpec{
			ServiceAccountName: p.Spec.ServiceAccountName,
			NodeName:           p.Spec.NodeName,
			Containers:         portsOnly(p.Spec.Containers),
			InitContainers:     portsOnly(p.Spec.InitContainers),
		}
	}
	return o, nil
}

func portsOnly(cs []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		if len(c.Ports) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return out
}

// Ready reports whether the first full resync is done.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Run watches both sides and reconciles until ctx ends. It returns once
// the workers have stopped.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.queue.ShutDown()

	w, err := c.ds.Watch(ctx, datastore.WatchOptions{Kinds: c.watchedKinds()})
	if err != nil {
		return fmt.Errorf("kubernetes: watching the datastore: %w", err)
	}
	defer w.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.consumeDatastore(ctx, w) })

	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("kubernetes: informer caches did not sync: %w", context.Cause(ctx))
	}
	select {
	case <-c.dsSynced:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.log.Info("caches in sync; full resync")
	start := time.Now()
	c.resyncNow(ctx)
	c.ready.Store(true)
	c.log.Info("initial resync done", "took", time.Since(start).Round(time.Millisecond))

	for range c.cfg.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	var period <-chan time.Time
	if c.cfg.ResyncPeriod > 0 {
		t := time.NewTicker(c.cfg.ResyncPeriod)
		defer t.Stop()
		period = t.C
	}
	gapTick := time.NewTicker(c.cfg.GapResyncDelay)
	defer gapTick.Stop()
	gapSeen := false
	for {
		select {
		case <-ctx.Done():
			c.queue.ShutDown()
			return nil
		case <-period:
			c.enqueueAll("periodic")
		case <-gapTick.C:
			// A watch error seen at one tick is resynced at the next, by
			// when the informer has relisted.
			if gapSeen {
				gapSeen = false
				c.enqueueAll("watch gap")
			}
			if c.gap.Swap(false) {
				gapSeen = true
			}
		}
	}
}

func (c *Controller) watchedKinds() []api.KindInfo {
	var names []string
	if c.cfg.enabled(ControllerPolicy) {
		names = append(names, "NetworkPolicy", api.KindKubernetesNetworkPolicy)
	}
	if c.cfg.enabled(ControllerNamespace) || c.cfg.enabled(ControllerServiceAccount) {
		names = append(names, "Profile")
	}
	if c.cfg.enabled(ControllerWorkloadEndpoint) || c.cfg.enabled(ControllerNode) {
		names = append(names, "WorkloadEndpoint")
	}
	if c.cfg.enabled(ControllerNode) {
		names = append(names, "Node")
	}
	out := make([]api.KindInfo, 0, len(names))
	for _, n := range names {
		k, ok := api.LookupKind(n)
		if !ok {
			panic("kubernetes: api registry lacks kind " + n)
		}
		out = append(out, k)
	}
	return out
}

// consumeDatastore keeps the datastore cache and queues the keys whose
// datastore side changed.
func (c *Controller) consumeDatastore(ctx context.Context, w *datastore.Watcher) {
	synced := false
	for {
		select {
		case <-ctx.Done():
			return
		case batch, ok := <-w.Updates():
			if !ok {
				return
			}
			var keys []key
			c.mu.Lock()
			for i := range batch {
				u := &batch[i]
				if u.Type == datastore.UpdateInSync {
					c.dsRev = u.Revision
					if !synced {
						synced = true
						close(c.dsSynced)
					}
					continue
				}
				c.dsRev = max(c.dsRev, u.Revision)
				if k, ok := c.applyUpdate(u); ok && synced {
					keys = append(keys, k)
				}
			}
			c.mu.Unlock()
			for _, k := range keys {
				c.queue.Add(k)
			}
		}
	}
}

// applyUpdate records one datastore change and returns the key it
// concerns. Called with mu held.
func (c *Controller) applyUpdate(u *datastore.Update) (key, bool) {
	ok := objKey{u.Kind, u.Namespace, u.Name}
	old := c.objs[ok]
	if u.Type == datastore.UpdateSet && u.Object != nil {
		c.objs[ok] = u.Object
	} else {
		delete(c.objs, ok)
	}
	switch u.Kind {
	case "WorkloadEndpoint":
		if o, _ := old.(*api.WorkloadEndpoint); o != nil {
			c.unindex(o)
		}
		if n, _ := c.objs[ok].(*api.WorkloadEndpoint); n != nil && n.Spec.Orchestrator == api.OrchestratorKubernetes && n.Spec.Pod != "" {
			r := podRef{n.Namespace, n.Spec.Pod}
			m := c.weps[r]
			if m == nil {
				m = map[string]*api.WorkloadEndpoint{}
				c.weps[r] = m
			}
			m[n.Name] = n
			return key{kindPod, r.namespace, r.name}, c.cfg.enabled(ControllerWorkloadEndpoint)
		}
		return key{}, false
	case "Profile":
		switch kd, ns, sa, ok := profileOwner(u.Name); {
		case !ok:
		case kd == "ns":
			return key{kindNamespace, "", ns}, c.cfg.enabled(ControllerNamespace)
		default:
			return key{kindServiceAccount, ns, sa}, c.cfg.enabled(ControllerServiceAccount)
		}
	case "NetworkPolicy":
		if name, ok := strings.CutPrefix(u.Name, api.K8sNetworkPolicyPrefix); ok {
			return key{kindPolicy, u.Namespace, name}, true
		}
	case api.KindKubernetesNetworkPolicy:
		return key{kindPolicy, u.Namespace, u.Name}, true
	case "Node":
		return key{kindNode, "", u.Name}, true
	}
	return key{}, false
}

func (c *Controller) unindex(o *api.WorkloadEndpoint) {
	r := podRef{o.Namespace, o.Spec.Pod}
	if m := c.weps[r]; m != nil {
		delete(m, o.Name)
		if len(m) == 0 {
			delete(c.weps, r)
		}
	}
}

func (c *Controller) enqueueObj(k kind, o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	m, err := meta.Accessor(o)
	if err != nil {
		return
	}
	if k == kindNode {
		if _, gone := o.(*corev1.Node); gone {
			// Deletes reach here with the last state; a node's name is
			// remembered so that its cleanup does not depend on
			// orchestrator references.
			if _, err := c.nodes.Get(m.GetName()); apierrors.IsNotFound(err) {
				c.mu.Lock()
				c.deletedNodes[m.GetName()] = true
				c.mu.Unlock()
			}
		}
	}
	c.queue.Add(key{k, m.GetNamespace(), m.GetName()})
}

// listKeys puts the key of every object a lister holds.
func listKeys[T interface {
	GetNamespace() string
	GetName() string
}](l interface {
	List(labels.Selector) ([]T, error)
}, k kind, put func(key)) error {
	objs, err := l.List(everything)
	if err != nil {
		return err
	}
	for _, o := range objs {
		put(key{k, o.GetNamespace(), o.GetName()}) // "" for cluster-scoped kinds
	}
	return nil
}

// allKeys lists every key of both sides.
func (c *Controller) allKeys() ([]key, error) {
	seen := map[key]bool{}
	var out []key
	put := func(k key) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if c.policies != nil {
		if err := listKeys(c.policies, kindPolicy, put); err != nil {
			return nil, err
		}
	}
	if c.namespaces != nil {
		if err := listKeys(c.namespaces, kindNamespace, put); err != nil {
			return nil, err
		}
	}
	if c.accounts != nil {
		if err := listKeys(c.accounts, kindServiceAccount, put); err != nil {
			return nil, err
		}
	}
	if c.nodes != nil {
		if err := listKeys(c.nodes, kindNode, put); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	for r := range c.weps {
		if c.pods != nil {
			put(key{kindPod, r.namespace, r.name})
		}
	}
	for ok, o := range c.objs {
		u := datastore.Update{Type: datastore.UpdateSet, Kind: ok.kind, Namespace: ok.namespace, Name: ok.name, Object: o}
		if k, yes := c.keyOf(&u); yes {
			put(k)
		}
	}
	c.mu.Unlock()
	return out, nil
}

// keyOf is applyUpdate's key without the bookkeeping. Called with mu held.
func (c *Controller) keyOf(u *datastore.Update) (key, bool) {
	switch u.Kind {
	case "WorkloadEndpoint":
		return key{}, false // pods come from the index
	case "Profile":
		switch kd, ns, sa, ok := profileOwner(u.Name); {
		case !ok:
		case kd == "ns":
			return key{kindNamespace, "", ns}, c.cfg.enabled(ControllerNamespace)
		default:
			return key{kindServiceAccount, ns, sa}, c.cfg.enabled(ControllerServiceAccount)
		}
	case "NetworkPolicy":
		if name, ok := strings.CutPrefix(u.Name, api.K8sNetworkPolicyPrefix); ok {
			return key{kindPolicy, u.Namespace, name}, c.cfg.enabled(ControllerPolicy)
		}
	case api.KindKubernetesNetworkPolicy:
		return key{kindPolicy, u.Namespace, u.Name}, c.cfg.enabled(ControllerPolicy)
	case "Node":
		return key{kindNode, "", u.Name}, c.cfg.enabled(ControllerNode)
	}
	return key{}, false
}

// enqueueAll queues every key (a full resync done by the workers).
func (c *Controller) enqueueAll(why string) {
	keys, err := c.allKeys()
	if err != nil {
		c.log.Error("resync: listing keys", "err", err)
		return
	}
	c.m.resyncs.WithLabelValues(why).Inc()
	c.log.Info("full resync", "reason", why, "keys", len(keys))
	for _, k := range keys {
		c.queue.Add(k)
	}
}

// resyncNow reconciles every key at once with the configured parallelism;
// keys that fail go to the queue with backoff.
func (c *Controller) resyncNow(ctx context.Context) {
	start := time.Now()
	keys, err := c.allKeys()
	if err != nil {
		c.log.Error("resync: listing keys", "err", err)
		return
	}
	c.m.resyncs.WithLabelValues("start").Inc()
	ch := make(chan key)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for k := range ch {
				if err := c.reconcile(ctx, k); err != nil {
					c.noteError(k, err)
					c.queue.AddRateLimited(k)
				}
			}
		})
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
	c.m.resyncSeconds.Set(time.Since(start).Seconds())
}

func (c *Controller) processNext(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	if err := c.reconcile(ctx, k); err != nil {
		c.noteError(k, err)
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

func (c *Controller) noteError(k key, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s := k.String() + ": " + err.Error()
	c.lastError.Store(&s)
	if errors.Is(err, datastore.ErrConflict) {
		// The cache was behind a write of ours or the CNI's: routine.
		c.log.Debug("reconcile raced a write; retrying", "key", k.String(), "err", err)
		return
	}
	c.log.Warn("reconcile failed; retrying", "key", k.String(), "err", err)
}

// reconcile brings the datastore in step with one Kubernetes object.
func (c *Controller) reconcile(ctx context.Context, k key) error {
	var err error
	switch k.kind {
	case kindPolicy:
		err = c.syncPolicy(ctx, k.namespace, k.name)
	case kindNamespace:
		err = c.syncNamespace(ctx, k.name)
	case kindServiceAccount:
		err = c.syncServiceAccount(ctx, k.namespace, k.name)
	case kindPod:
		err = c.syncPod(ctx, k.namespace, k.name)
	case kindNode:
		err = c.syncNode(ctx, k.name)
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	c.m.reconciles.WithLabelValues(k.kind.String(), result).Inc()
	return err
}

// cached returns the datastore's current object, or nil.
func (c *Controller) cached(kind, namespace, name string) api.Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.objs[objKey{kind, namespace, name}]
}

func (c *Controller) syncPolicy(ctx context.Context, ns, name string) error {
	np, err := c.policies.NetworkPolicies(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	orig := c.cached(api.KindKubernetesNetworkPolicy, ns, name)
	trans := c.cached("NetworkPolicy", ns, api.K8sNetworkPolicyPrefix+name)
	if np == nil {
		if orig != nil {
			_, err := c.ds.WriteBatch(ctx, datastore.OpDelete, []api.Object{&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}})
			if err != nil && !errors.Is(err, datastore.ErrNotFound) {
				return fmt.Errorf("deleting kubernetes policy %s/%s: %w", ns, name, err)
			}
			c.m.writes.WithLabelValues("networkpolicy", "delete").Inc()
			return nil
		}
		if trans != nil {
			return c.delete(ctx, "NetworkPolicy", ns, api.K8sNetworkPolicyPrefix+name)
		}
		return nil
	}
	want := storedPolicy(np)
	wantTrans, err := translatedPolicy(want)
	if err != nil {
		// The API server validated the policy; what it accepts and we
		// cannot translate is logged and not retried.
		c.log.Error("cannot translate kubernetes policy; not enforced", "namespace", ns, "name", name, "err", err)
		c.m.invalid.Inc()
		return nil
	}
	if orig != nil && trans != nil && sameObject(orig, want) && sameObject(trans, wantTrans) {
		return nil
	}
	if _, err := c.ds.WriteBatch(ctx, datastore.OpApply, []api.Object{want}); err != nil {
		return fmt.Errorf("writing kubernetes policy %s/%s: %w", ns, name, err)
	}
	c.m.writes.WithLabelValues("networkpolicy", "apply").Inc()
	return nil
}

func (c *Controller) syncNamespace(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	pname := api.NamespaceProfilePrefix + name
	if ns == nil {
		return c.delete(ctx, "Profile", "", pname)
	}
	return c.applyIfChanged(ctx, namespaceProfile(ns))
}

func (c *Controller) syncServiceAccount(ctx context.Context, namespace, name string) error {
	sa, err := c.accounts.ServiceAccounts(namespace).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	pname := api.ServiceAccountProfilePrefix + namespace + "." + name
	if sa == nil {
		return c.delete(ctx, "Profile", "", pname)
	}
	return c.applyIfChanged(ctx, serviceAccountProfile(sa))
}

// applyIfChanged writes a profile unless the datastore holds it already.
func (c *Controller) applyIfChanged(ctx context.Context, p *api.Profile) error {
	if cur := c.cached("Profile", "", p.Name); cur != nil && sameObject(cur, p) {
		return nil
	}
	if _, err := c.ds.Apply(ctx, p); err != nil {
		return fmt.Errorf("writing profile %s: %w", p.Name, err)
	}
	c.m.writes.WithLabelValues("profile", "apply").Inc()
	return nil
}

// delete removes a datastore object if the cache has it.
func (c *Controller) delete(ctx context.Context, kind, ns, name string) error {
	if c.cached(kind, ns, name) == nil {
		return nil
	}
	k, _ := api.LookupKind(kind)
	if _, err := c.ds.Delete(ctx, k, ns, name, ""); err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return fmt.Errorf("deleting %s %s: %w", kind, name, err)
	}
	c.m.writes.WithLabelValues(strings.ToLower(kind), "delete").Inc()
	return nil
}

func (c *Controller) syncPod(ctx context.Context, ns, name string) error {
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The endpoint goes with the CNI DEL (or GC), not with the pod.
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	var weps []*api.WorkloadEndpoint
	for _, w := range c.weps[podRef{ns, name}] {
		weps = append(weps, w)
	}
	c.mu.Unlock()
	var errs []error
	for _, w := range weps {
		want, changed := endpointFor(w, pod)
		if !changed {
			continue
		}
		_, err := c.ds.Update(ctx, want)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			// Gone meanwhile (CNI DEL); the watch will say so.
		case err != nil:
			errs = append(errs, fmt.Errorf("updating endpoint %s/%s: %w", w.Namespace, w.Name, err))
		default:
			c.m.writes.WithLabelValues("workloadendpoint", "update").Inc()
		}
	}
	return errors.Join(errs...)
}

var everything = labels.Everything()
