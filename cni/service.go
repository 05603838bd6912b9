package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni/wire"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults and bounds of ServiceConfig.
const (
	DefaultReadyTimeout = 10 * time.Second
	MaxReadyTimeout     = 5 * time.Minute
	// DefaultCleanupTimeout bounds a rollback or a DEL's datastore work.
	DefaultCleanupTimeout = 30 * time.Second
	// DefaultServiceAccount is a pod's service account when the runtime
	// does not say.
	DefaultServiceAccount = "default"
)

// ReadyFunc blocks until the policy of the WorkloadEndpoint namespace/name,
// as of datastore revision revision or later, is programmed in the kernel,
// or ctx ends. It returns nil when programmed and an error saying why not
// otherwise. The agent backs it with its endpoint readiness wait.
type ReadyFunc func(ctx context.Context, namespace, name string, revision int64) error

// PodInfo is what the orchestrator knows about a Kubernetes pod at ADD
// time.
type PodInfo struct {
	// Labels are the pod's labels. They go on the WorkloadEndpoint, under
	// the projectcalico.org/* labels the service sets (those win on a
	// clash).
	Labels map[string]string
	// ServiceAccount is the pod's service account; empty falls back to
	// the request's K8S_POD_SERVICE_ACCOUNT, then to "default".
	ServiceAccount string
	// Ports are the pod's named ports, as the Kubernetes controller
	// derives them from the pod's containers; they become the endpoint's
	// spec.ports.
	Ports []api.WorkloadEndpointPort
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Datastore holds WorkloadEndpoints and Profiles. Required.
	Datastore *datastore.Client
	// IPAM assigns addresses; it should be built over
	// ipam.NewEtcdStore(Datastore). Required.
	IPAM *ipam.IPAM
	// Node is this host's name. Required.
	Node string
	// Ready waits for an endpoint's policy to be programmed. Required: ADD
	// answers only once it returns nil.
	Ready ReadyFunc
	// PodInfo, when set, looks up a Kubernetes pod's labels, service
	// account and named ports for an ADD that carries K8s arguments. It
	// runs while the address is assigned; an error fails the ADD (the
	// address is released). nil: the endpoint gets only the
	// projectcalico.org/* labels and the request's service account, and no
	// ports.
	PodInfo func(ctx context.Context, namespace, pod string) (PodInfo, error)
	// Status reports the agent's own readiness for CNI STATUS (for
	// example: in sync and programmed). nil: only the datastore is checked.
	Status func(ctx context.Context) error
	// InterfacePrefix of host-side veths; default DefaultInterfacePrefix.
	InterfacePrefix string
	// ReadyTimeout is the wait when a request gives none; default
	// DefaultReadyTimeout. Requests are capped at MaxReadyTimeout.
	ReadyTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Validate checks the configuration and fills in defaults.
func (c *ServiceConfig) Validate() error {
	switch {
	case c.Datastore == nil:
		return errors.New("cni: ServiceConfig.Datastore is required")
	case c.IPAM == nil:
		return errors.New("cni: ServiceConfig.IPAM is required")
	case c.Node == "":
		return errors.New("cni: ServiceConfig.Node is required")
	case c.Ready == nil:
		return errors.New("cni: ServiceConfig.Ready is required")
	case c.ReadyTimeout < 0 || c.ReadyTimeout > MaxReadyTimeout:
		return fmt.Errorf("cni: ServiceConfig.ReadyTimeout %s: want 0 (default) to %s", c.ReadyTimeout, MaxReadyTimeout)
	case len(c.InterfacePrefix) > 11:
		return fmt.Errorf("cni: ServiceConfig.InterfacePrefix %q: at most 11 bytes, so 4 hex digits remain", c.InterfacePrefix)
	}
	if c.InterfacePrefix == "" {
		c.InterfacePrefix = DefaultInterfacePrefix
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Service serves the CNI plugin's requests (paths under wire.PathPrefix).
type Service struct {
	cfg   ServiceConfig
	store ipam.Store
	log   *slog.Logger
	mux   *http.ServeMux

	mu sync.Mutex
	// locks holds, per IPAM handle, a channel closed when the request
	// holding the handle finishes; its presence marks the attachment in
	// flight (GC skips it). Guarded by mu.
	locks map[string]chan struct{}

	// assigner group-commits this host's automatic assignments (one batch
	// at a time, as Calico's host-wide IPAM lock serialises them): ADDs
	// arriving together share one write of their block instead of racing
	// for it.
	assigner *batcher[ipam.AutoAssignArgs, ipam.AssignResult]
	// writer group-commits endpoint writes: ADDs arriving together write
	// their WorkloadEndpoints in one transaction (and the agent programs
	// them in one pass).
	writer *batcher[*api.WorkloadEndpoint, endpointWrite]

	// afterEndpointWrite, when set (tests only), runs after the endpoint
	// is written and before the readiness wait; a panic there stands in
	// for the agent dying mid-ADD (no rollback runs).
	afterEndpointWrite func()
}

// NewService returns the CNI service. Mount it on the agent's local API:
//
//	mux.Handle(wire.PathPrefix, svc)
func NewService(cfg ServiceConfig) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:   cfg,
		store: ipam.NewEtcdStore(cfg.Datastore),
		log:   cfg.Logger,
		mux:   http.NewServeMux(),
		locks: map[string]chan struct{}{},
	}
	s.assigner = &batcher[ipam.AutoAssignArgs, ipam.AssignResult]{run: cfg.IPAM.AutoAssignMany, timeout: DefaultCleanupTimeout}
	s.writer = &batcher[*api.WorkloadEndpoint, endpointWrite]{run: s.writeEndpoints, timeout: DefaultCleanupTimeout}
	s.mux.HandleFunc("POST "+wire.PathAdd, handle(s, s.Add))
	s.mux.HandleFunc("POST "+wire.PathDel, handle(s, s.Del))
	s.mux.HandleFunc("POST "+wire.PathCheck, handle(s, s.Check))
	s.mux.HandleFunc("POST "+wire.PathGC, handle(s, s.GC))
	s.mux.HandleFunc("GET "+wire.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status(r.Context()))
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handle decodes a request body into Req, calls fn and encodes the answer.
func handle[Req, Resp any](s *Service, fn func(context.Context, *Req) (*Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, &wire.Error{Code: wire.CodeInvalidConfig, Msg: "bad request body", Details: err.Error()})
			return
		}
		resp, err := fn(r.Context(), &req)
		if err != nil {
			var we *wire.Error
			if !errors.As(err, &we) {
				we = &wire.Error{Code: wire.CodeInternal, Msg: err.Error()}
			}
			status := http.StatusInternalServerError
			switch we.Code {
			case wire.CodeInvalidConfig, wire.CodeInvalidEnvVariables:
				status = http.StatusBadRequest
			case wire.CodeTryAgainLater:
				status = http.StatusServiceUnavailable
			}
			s.log.Warn("cni request failed", "path", r.URL.Path, "err", we.Error())
			writeJSON(w, status, we)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func badRequest(err error) error {
	return &wire.Error{Code: wire.CodeInvalidConfig, Msg: err.Error()}
}

// lock serialises requests for one handle and marks it in flight.
func (s *Service) lock(ctx context.Context, handle string) (unlock func(), err error) {
	for {
		s.mu.Lock()
		ch, busy := s.locks[handle]
		if !busy {
			ch = make(chan struct{})
			s.locks[handle] = ch
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.locks, handle)
				s.mu.Unlock()
				close(ch)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another request on %s: %w", handle, ctx.Err())
		}
	}
}

func (s *Service) inFlight(handle string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.locks[handle]
	return ok
}

// Add assigns addresses, writes the WorkloadEndpoint and waits until its
// policy is programmed. On any error after the first address is taken the
// endpoint (if written here) is deleted and the handle released.
func (s *Service) Add(ctx context.Context, req *wire.AddRequest) (resp *wire.AddResponse, err error) {
	id, err := identify(s.cfg.Node, s.cfg.InterfacePrefix, &req.Attachment)
	if err != nil {
		return nil, badRequest(fmt.Errorf("add: %w", err))
	}
	requested, err := parseRequestedIPs(req.IPs)
	if err != nil {
		return nil, badRequest(fmt.Errorf("add: %w", err))
	}
	if len(requested) == 0 && !req.AssignIPv4 && !req.AssignIPv6 {
		return nil, badRequest(errors.New("add: ipam: assign_ipv4 and assign_ipv6 are both false and no address was requested"))
	}
	timeout := s.cfg.ReadyTimeout
	if req.ReadyTimeoutMillis < 0 {
		return nil, badRequest(fmt.Errorf("add: readyTimeoutMillis %d: must not be negative", req.ReadyTimeoutMillis))
	}
	if req.ReadyTimeoutMillis > 0 {
		timeout = min(time.Duration(req.ReadyTimeoutMillis)*time.Millisecond, MaxReadyTimeout)
	}
	unlock, err := s.lock(ctx, id.handle)
	if err != nil {
		return nil, err
	}
	defer unlock()
	log := s.log.With("containerID", req.ContainerID, "endpoint", id.namespace+"/"+id.name)

	// A handle left by an earlier ADD of this attachment (a crash, or ADD
	// retried without DEL) is released first, so addresses never pile up.
	if stale, err := s.cfg.IPAM.ReleaseByHandle(ctx, id.handle); err == nil {
		log.Warn("released addresses an earlier ADD of this attachment left", "handle", id.handle, "addresses", stale)
	} else if !errors.Is(err, ipam.ErrHandleNotFound) {
		return nil, fmt.Errorf("add: release stale handle %s: %w", id.handle, err)
	}

	var wroteRev int64
	defer func() {
		if err == nil {
			return
		}
		if rerr := s.rollback(ctx, id, req.ContainerID, wroteRev); rerr != nil {
			err = fmt.Errorf("%w (and rolling back failed: %v)", err, rerr)
		}
	}()

	// The pod lookup (an API server round trip) overlaps the assignment.
	var podc chan podLookup
	if k := req.K8s; k != nil && s.cfg.PodInfo != nil {
		podc = make(chan podLookup, 1)
		go func() {
			pi, err := s.cfg.PodInfo(ctx, k.Namespace, k.Pod)
			podc <- podLookup{pi, err}
		}()
	}
	ips, err := s.assign(ctx, id, req, requested)
	if err != nil {
		return nil, err
	}
	var pod *PodInfo
	if podc != nil {
		var r podLookup
		select {
		case r = <-podc:
		case <-ctx.Done():
			r.err = ctx.Err()
		}
		if r.err != nil {
			return nil, &wire.Error{Code: wire.CodeInternal, Msg: fmt.Sprintf("add: look up pod %s/%s for its labels and service account", req.K8s.Namespace, req.K8s.Pod), Details: r.err.Error()}
		}
		pod = &r.info
	}
	if a := req.K8s; a == nil {
		if err := s.ensureNetworkProfile(ctx, req.Network); err != nil {
			return nil, err
		}
	}
	wep := s.endpoint(id, &req.Attachment, pod, ips)
	wroteRev, err = s.writeEndpoint(ctx, wep)
	if err != nil {
		return nil, err
	}
	if s.afterEndpointWrite != nil {
		s.afterEndpointWrite()
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.cfg.Ready(rctx, id.namespace, id.name, wroteRev); err != nil {
		code := uint(wire.CodeTryAgainLater)
		return nil, &wire.Error{Code: code, Msg: fmt.Sprintf("add: policy for endpoint %s/%s was not programmed within %s", id.namespace, id.name, timeout), Details: err.Error()}
	}
	out := &wire.AddResponse{InterfaceName: id.ifName, Namespace: id.namespace, Name: id.name, Revision: wroteRev}
	for _, p := range ips {
		out.IPs = append(out.IPs, p.String())
	}
	log.Debug("added", "interface", id.ifName, "ips", out.IPs)
	return out, nil
}

func parseRequestedIPs(in []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, s := range in {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil || p.Bits() != p.Addr().BitLen() {
				return nil, fmt.Errorf("ips[%d] %q: want an IP address (or a /32, /128)", i, s)
			}
			a = p.Addr()
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// assign takes the attachment's addresses; on error, rollback (by handle)
// frees any it took.
func (s *Service) assign(ctx context.Context, id identity, req *wire.AddRequest, requested []netip.Addr) ([]netip.Prefix, error) {
	attrs := map[string]string{ipam.AttrNode: s.cfg.Node, "timestamp": time.Now().UTC().Format(time.RFC3339)}
	if id.k8s != nil {
		attrs["namespace"] = id.k8s.Namespace
		attrs["pod"] = id.k8s.Pod
	}
	if len(requested) > 0 {
		var out []netip.Prefix
		for _, a := range requested {
			if err := s.cfg.IPAM.AssignIP(ctx, ipam.AssignIPArgs{IP: a, HandleID: id.handle, Attrs: attrs}); err != nil {
				return nil, &wire.Error{Code: wire.CodeInternal, Msg: fmt.Sprintf("add: assign requested address %s", a), Details: err.Error()}
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
		return out, nil
	}
	args := ipam.AutoAssignArgs{HandleID: id.handle, Attrs: attrs}
	if req.AssignIPv4 {
		args.Num4 = 1
		args.Pools = append(args.Pools, req.IPv4Pools...)
	}
	if req.AssignIPv6 {
		args.Num6 = 1
		args.Pools = append(args.Pools, req.IPv6Pools...)
	}
	res, ok := s.assigner.do(ctx, args)
	if !ok {
		return nil, fmt.Errorf("add: waiting to assign an address: %w", ctx.Err())
	}
	got, err := res.Prefixes, res.Err
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Msg: "add: ipam", Details: err.Error()}
	}
	out := make([]netip.Prefix, len(got))
	for i, p := range got {
		out[i] = netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
	}
	return out, nil
}

type podLookup struct {
	info PodInfo
	err  error
}

// endpoint builds the WorkloadEndpoint of an attachment; pod, if not nil,
// is what PodInfo said about a Kubernetes pod.
func (s *Service) endpoint(id identity, a *wire.Attachment, pod *PodInfo, ips []netip.Prefix) *api.WorkloadEndpoint {
	labels := map[string]string{}
	if pod != nil {
		for k, v := range pod.Labels {
			labels[k] = v
		}
	}
	labels[api.LabelNamespace] = id.namespace
	labels[api.LabelOrchestrator] = id.orchestrator
	spec := api.WorkloadEndpointSpec{
		Orchestrator:  id.orchestrator,
		Node:          s.cfg.Node,
		ContainerID:   a.ContainerID,
		Endpoint:      a.IfName,
		InterfaceName: id.ifName,
	}
	if k := a.K8s; k != nil {
		sa := k.ServiceAccount
		if pod != nil && pod.ServiceAccount != "" {
			sa = pod.ServiceAccount
		}
		if sa == "" {
			sa = DefaultServiceAccount
		}
		if len(sa) < 63 {
			labels[api.LabelServiceAccount] = sa
		} else {
			// Too long for a label value; a pod label of that key must
			// not stand in for it.
			delete(labels, api.LabelServiceAccount)
		}
		spec.Pod = k.Pod
		spec.ServiceAccountName = sa
		if pod != nil {
			spec.Ports = slices.Clone(pod.Ports)
		}
		spec.Profiles = []string{api.NamespaceProfilePrefix + k.Namespace, api.ServiceAccountProfilePrefix + k.Namespace + "." + sa}
	} else {
		spec.Profiles = []string{a.Network}
	}
	for _, p := range ips {
		spec.IPNetworks = append(spec.IPNetworks, p.String())
	}
	return &api.WorkloadEndpoint{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "WorkloadEndpoint"},
		ObjectMeta: metav1.ObjectMeta{Name: id.name, Namespace: id.namespace, Labels: labels},
		Spec:       spec,
	}
}

// endpointWrite is the outcome of one endpoint write: its revision.
type endpointWrite struct {
	rev int64
	err error
}

// writeEndpoint creates or overwrites the endpoint (a newer sandbox of the
// same pod replaces an older one's) and returns the write's revision. It
// goes through the writer, so concurrent ADDs share a transaction.
func (s *Service) writeEndpoint(ctx context.Context, wep *api.WorkloadEndpoint) (int64, error) {
	res, ok := s.writer.do(ctx, wep)
	if !ok {
		return 0, fmt.Errorf("add: waiting to write endpoint %s/%s: %w", wep.Namespace, wep.Name, ctx.Err())
	}
	return res.rev, res.err
}

// writeEndpoints applies a batch of endpoints in one transaction; if that
// fails (say, two sandboxes of one pod in the batch), one by one.
func (s *Service) writeEndpoints(ctx context.Context, weps []*api.WorkloadEndpoint) []endpointWrite {
	out := make([]endpointWrite, len(weps))
	if len(weps) > 1 {
		objs := make([]api.Object, len(weps))
		for i, w := range weps {
			objs[i] = w
		}
		res, err := s.cfg.Datastore.WriteBatch(ctx, datastore.OpApply, objs)
		if err == nil && len(res) == len(weps) {
			for _, r := range res {
				out[r.Index] = s.endpointRevision(weps[r.Index], r.Object, nil)
			}
			return out
		}
		s.log.Debug("batched endpoint write failed; writing one by one", "endpoints", len(weps), "err", err)
	}
	for i, w := range weps {
		obj, err := s.cfg.Datastore.Apply(ctx, w)
		out[i] = s.endpointRevision(w, obj, err)
	}
	return out
}

func (s *Service) endpointRevision(wep *api.WorkloadEndpoint, stored api.Object, err error) endpointWrite {
	if err != nil {
		return endpointWrite{err: &wire.Error{Code: wire.CodeInternal, Msg: fmt.Sprintf("add: write endpoint %s/%s", wep.Namespace, wep.Name), Details: err.Error()}}
	}
	if stored == nil {
		return endpointWrite{err: fmt.Errorf("add: endpoint %s/%s: the datastore returned no object", wep.Namespace, wep.Name)}
	}
	rev, err := datastore.ParseRevision(stored.GetResourceVersion())
	if err != nil {
		return endpointWrite{err: fmt.Errorf("add: endpoint %s/%s: %w", wep.Namespace, wep.Name, err)}
	}
	return endpointWrite{rev: rev}
}

// ensureNetworkProfile creates a plain-CNI network's profile if it is
// missing (compat §5.2): it applies the label <network>="" to members,
// admits traffic from members and allows all egress.
func (s *Service) ensureNetworkProfile(ctx context.Context, network string) error {
	kind, _ := api.LookupKind("Profile")
	if _, err := s.cfg.Datastore.Get(ctx, kind, "", network); err == nil {
		return nil
	} else if !errors.Is(err, datastore.ErrNotFound) {
		return fmt.Errorf("add: read profile %s: %w", network, err)
	}
	p := &api.Profile{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "Profile"},
		ObjectMeta: metav1.ObjectMeta{Name: network},
		Spec: api.ProfileSpec{
			Ingress:       []api.Rule{{Action: api.Allow, Source: api.EntityRule{Selector: "has(" + network + ")"}}},
			Egress:        []api.Rule{{Action: api.Allow}},
			LabelsToApply: map[string]string{network: ""},
		},
	}
	if _, err := s.cfg.Datastore.Create(ctx, p); err != nil && !errors.Is(err, datastore.ErrAlreadyExists) {
		return &wire.Error{Code: wire.CodeInternal, Msg: fmt.Sprintf("add: create profile for network %s", network), Details: err.Error()}
	}
	return nil
}

// rollback undoes a failed ADD: the endpoint (only the one this ADD wrote,
// at revision rev, if rev > 0) and the handle. It runs on a context that
// outlives the request's, so a caller that gave up does not leak.
func (s *Service) rollback(ctx context.Context, id identity, containerID string, rev int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCleanupTimeout)
	defer cancel()
	var errs []error
	if rev > 0 {
		if _, err := s.deleteEndpoint(ctx, id, containerID); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := s.cfg.IPAM.ReleaseByHandle(ctx, id.handle); err != nil && !errors.Is(err, ipam.ErrHandleNotFound) {
		errs = append(errs, fmt.Errorf("release %s: %w", id.handle, err))
	}
	return errors.Join(errs...)
}

// deleteEndpoint deletes the endpoint if it belongs to containerID,
// compare-and-swapping on the revision read, and retrying a few times.
func (s *Service) deleteEndpoint(ctx context.Context, id identity, containerID string) (bool, error) {
	kind, _ := api.LookupKind("WorkloadEndpoint")
	for attempt := 0; ; attempt++ {
		obj, err := s.cfg.Datastore.Get(ctx, kind, id.namespace, id.name)
		if errors.Is(err, datastore.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read endpoint %s/%s: %w", id.namespace, id.name, err)
		}
		wep, ok := obj.(*api.WorkloadEndpoint)
		if !ok {
			return false, fmt.Errorf("endpoint %s/%s: unexpected type %T", id.namespace, id.name, obj)
		}
		if wep.Spec.ContainerID != containerID {
			s.log.Info("endpoint belongs to another container; leaving it", "endpoint", id.namespace+"/"+id.name, "owner", wep.Spec.ContainerID, "containerID", containerID)
			return false, nil
		}
		_, err = s.cfg.Datastore.Delete(ctx, kind, id.namespace, id.name, wep.ResourceVersion)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, datastore.ErrNotFound):
			return false, nil
		case errors.Is(err, datastore.ErrConflict) && attempt < 5:
			continue
		default:
			return false, fmt.Errorf("delete endpoint %s/%s: %w", id.namespace, id.name, err)
		}
	}
}

// Del removes an attachment's endpoint (if it is this container's) and
// releases its addresses. Missing pieces are not errors.
func (s *Service) Del(ctx context.Context, req *wire.DelRequest) (*wire.DelResponse, error) {
	id, err := identify(s.cfg.Node, s.cfg.InterfacePrefix, &req.Attachment)
	if err != nil {
		return nil, badRequest(fmt.Errorf("del: %w", err))
	}
	unlock, err := s.lock(ctx, id.handle)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCleanupTimeout)
	defer cancel()
	out := &wire.DelResponse{}
	if out.EndpointDeleted, err = s.deleteEndpoint(ctx, id, req.ContainerID); err != nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Msg: "del", Details: err.Error()}
	}
	for _, h := range []string{id.handle, id.legacyHandle} {
		if h == "" {
			continue
		}
		addrs, err := s.cfg.IPAM.ReleaseByHandle(ctx, h)
		if err != nil && !errors.Is(err, ipam.ErrHandleNotFound) {
			return nil, &wire.Error{Code: wire.CodeInternal, Msg: "del: release " + h, Details: err.Error()}
		}
		for _, a := range addrs {
			out.Released = append(out.Released, a.String())
		}
	}
	s.log.Debug("deleted", "containerID", req.ContainerID, "endpoint", id.namespace+"/"+id.name, "endpointDeleted", out.EndpointDeleted, "released", out.Released)
	return out, nil
}
