package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni/wire"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
)

// statusTimeout bounds STATUS's datastore probe.
const statusTimeout = 3 * time.Second

// blockPrefix is where IPAM blocks live.
const blockPrefix = datastore.IPAMPrefix + "assignment/"

// Check returns the datastore's view of an attachment and the problems
// found there; the plugin compares it with the kernel.
func (s *Service) Check(ctx context.Context, req *wire.CheckRequest) (*wire.CheckResponse, error) {
	id, err := identify(s.cfg.Node, s.cfg.InterfacePrefix, &req.Attachment)
	if err != nil {
		return nil, badRequest(fmt.Errorf("check: %w", err))
	}
	out := &wire.CheckResponse{InterfaceName: id.ifName, Namespace: id.namespace, Name: id.name}
	kind, _ := api.LookupKind("WorkloadEndpoint")
	obj, err := s.cfg.Datastore.Get(ctx, kind, id.namespace, id.name)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		out.Problems = append(out.Problems, fmt.Sprintf("workload endpoint %s/%s does not exist", id.namespace, id.name))
	case err != nil:
		return nil, &wire.Error{Code: wire.CodeInternal, Msg: "check: read endpoint", Details: err.Error()}
	default:
		wep := obj.(*api.WorkloadEndpoint)
		if wep.Spec.ContainerID != req.ContainerID {
			out.Problems = append(out.Problems, fmt.Sprintf("workload endpoint %s/%s belongs to container %q", id.namespace, id.name, wep.Spec.ContainerID))
		}
		if wep.Spec.InterfaceName != id.ifName {
			out.Problems = append(out.Problems, fmt.Sprintf("workload endpoint %s/%s names interface %q, want %q", id.namespace, id.name, wep.Spec.InterfaceName, id.ifName))
		}
		out.IPs = wep.Spec.IPNetworks
	}
	if _, _, err := s.store.Get(ctx, ipam.HandleKey(id.handle)); errors.Is(err, ipam.ErrNotFound) {
		out.Problems = append(out.Problems, fmt.Sprintf("ipam handle %s does not exist", id.handle))
	} else if err != nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Msg: "check: read ipam handle", Details: err.Error()}
	}
	return out, nil
}

// GC releases the handles of req.Network held on this node whose container
// the runtime no longer lists, and deletes those containers' endpoints on
// this node. Attachments with a request in flight are skipped.
func (s *Service) GC(ctx context.Context, req *wire.GCRequest) (*wire.GCResponse, error) {
	if req.Network == "" {
		return nil, badRequest(errors.New("gc: network: the CNI network name is required"))
	}
	valid := map[string]bool{}
	for _, a := range req.Valid {
		valid[a.ContainerID] = true
	}
	prefix := req.Network + "."
	kvs, err := s.store.List(ctx, blockPrefix)
	if err != nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Msg: "gc: list ipam blocks", Details: err.Error()}
	}
	stale := map[string]string{} // handle -> container ID
	for _, kv := range kvs {
		var b ipam.Block
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			s.log.Warn("gc: skipping undecodable block", "key", kv.Key, "err", err)
			continue
		}
		for _, a := range b.Attributes {
			if a.HandleID == nil || a.ReleasedAt != nil || a.Secondary[ipam.AttrNode] != s.cfg.Node {
				continue
			}
			h := *a.HandleID
			cid, ok := strings.CutPrefix(h, prefix)
			if !ok || cid == "" || valid[cid] {
				continue
			}
			stale[h] = cid
		}
	}
	out := &wire.GCResponse{}
	handles := make([]string, 0, len(stale))
	for h := range stale {
		handles = append(handles, h)
	}
	slices.Sort(handles)
	var errs []error
	gone := map[string]bool{}
	for _, h := range handles {
		if s.inFlight(h) {
			continue
		}
		unlock, err := s.lock(ctx, h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = s.cfg.IPAM.ReleaseByHandle(ctx, h)
		unlock()
		if err != nil && !errors.Is(err, ipam.ErrHandleNotFound) {
			errs = append(errs, fmt.Errorf("release %s: %w", h, err))
			continue
		}
		out.Handles = append(out.Handles, h)
		gone[stale[h]] = true
	}
	if len(gone) > 0 {
		deleted, err := s.gcEndpoints(ctx, gone)
		out.Endpoints = deleted
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, &wire.Error{Code: wire.CodeInternal, Msg: "gc", Details: err.Error()}
	}
	return out, nil
}

// gcEndpoints deletes this node's endpoints whose container ID is in gone.
func (s *Service) gcEndpoints(ctx context.Context, gone map[string]bool) ([]string, error) {
	kind, _ := api.LookupKind("WorkloadEndpoint")
	objs, _, err := s.cfg.Datastore.List(ctx, kind, datastore.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	var out []string
	var errs []error
	for _, o := range objs {
		wep, ok := o.(*api.WorkloadEndpoint)
		if !ok || wep.Spec.Node != s.cfg.Node || !gone[wep.Spec.ContainerID] {
			continue
		}
		_, err := s.cfg.Datastore.Delete(ctx, kind, wep.Namespace, wep.Name, wep.ResourceVersion)
		if err != nil && !errors.Is(err, datastore.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete endpoint %s/%s: %w", wep.Namespace, wep.Name, err))
			continue
		}
		out = append(out, wep.Namespace+"/"+wep.Name)
	}
	return out, errors.Join(errs...)
}

// Status reports whether ADD can be served: the datastore answers and the
// agent's own status function (if any) is happy.
func (s *Service) Status(ctx context.Context) *wire.StatusResponse {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if _, err := s.cfg.Datastore.Revision(ctx); err != nil {
		return &wire.StatusResponse{Reason: "datastore unreachable: " + err.Error()}
	}
	if s.cfg.Status != nil {
		if err := s.cfg.Status(ctx); err != nil {
			return &wire.StatusResponse{Reason: "agent not ready: " + err.Error()}
		}
	}
	return &wire.StatusResponse{Ready: true}
}

// DatastoreSource is an ipam.Source over the datastore: IPPools,
// IPReservations, the IPAMConfiguration "default" and Node labels, read on
// every call.
type DatastoreSource struct {
	c *datastore.Client
}

// NewDatastoreSource returns an ipam.Source reading c.
func NewDatastoreSource(c *datastore.Client) *DatastoreSource { return &DatastoreSource{c: c} }

var _ ipam.Source = (*DatastoreSource)(nil)

func listKind[T api.Object](ctx context.Context, c *datastore.Client, kindName string) ([]T, error) {
	kind, ok := api.LookupKind(kindName)
	if !ok {
		return nil, fmt.Errorf("unknown kind %s", kindName)
	}
	objs, _, err := c.List(ctx, kind, datastore.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind.Plural, err)
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// IPPools implements ipam.Source.
func (d *DatastoreSource) IPPools(ctx context.Context) ([]*api.IPPool, error) {
	return listKind[*api.IPPool](ctx, d.c, "IPPool")
}

// IPReservations implements ipam.Source.
func (d *DatastoreSource) IPReservations(ctx context.Context) ([]*api.IPReservation, error) {
	return listKind[*api.IPReservation](ctx, d.c, "IPReservation")
}

// IPAMConfig implements ipam.Source: the IPAMConfiguration named
// "default", or nil (defaults) if there is none.
func (d *DatastoreSource) IPAMConfig(ctx context.Context) (*api.IPAMConfigurationSpec, error) {
	kind, _ := api.LookupKind("IPAMConfiguration")
	o, err := d.c.Get(ctx, kind, "", "default")
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ipamconfiguration default: %w", err)
	}
	if c, ok := o.(*api.IPAMConfiguration); ok {
		return &c.Spec, nil
	}
	return nil, nil
}

// NodeLabels implements ipam.Source (nil if the Node does not exist).
func (d *DatastoreSource) NodeLabels(ctx context.Context, node string) (map[string]string, error) {
	kind, _ := api.LookupKind("Node")
	o, err := d.c.Get(ctx, kind, "", node)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node %s: %w", node, err)
	}
	return o.GetLabels(), nil
}
