package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// syncNode cleans up after a Kubernetes node that is gone: a Brindle node
// is this controller's to remove when the Kubernetes node was seen deleted
// in this run, or when the Brindle node refers to it (orchRefs k8s) —
// Brindle nodes of other orchestrators are left alone.
func (c *Controller) syncNode(ctx context.Context, name string) error {
	if _, err := c.nodes.Get(name); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	c.mu.Lock()
	deleted := c.deletedNodes[name]
	bn, _ := c.objs[objKey{"Node", "", name}].(*api.Node)
	c.mu.Unlock()
	if !deleted && (bn == nil || !refersToK8s(bn, name)) {
		return nil
	}
	if err := c.cleanupNode(ctx, name); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.deletedNodes, name)
	c.mu.Unlock()
	return nil
}

func refersToK8s(n *api.Node, name string) bool {
	return slices.ContainsFunc(n.Spec.OrchRefs, func(r api.OrchRef) bool {
		return r.Orchestrator == api.OrchestratorKubernetes && (r.NodeName == name || r.NodeName == "")
	})
}

// cleanupNode removes what a deleted node held, in an order that is safe
// to repeat after a failure at any step: its workload endpoints, every
// address allocated to it (by handle), its block affinities (an empty
// block is deleted; one still holding other nodes' addresses keeps them
// and loses its affinity), then the Brindle Node itself.
func (c *Controller) cleanupNode(ctx context.Context, node string) error {
	c.log.Info("cleaning up a deleted node", "node", node)
	wepKind, _ := api.LookupKind("WorkloadEndpoint")
	var weps []*api.WorkloadEndpoint
	c.mu.Lock()
	for k, o := range c.objs {
		if w, ok := o.(*api.WorkloadEndpoint); ok && k.kind == "WorkloadEndpoint" && w.Spec.Node == node {
			weps = append(weps, w)
		}
	}
	c.mu.Unlock()
	for _, w := range weps {
		if _, err := c.ds.Delete(ctx, wepKind, w.Namespace, w.Name, ""); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			return fmt.Errorf("node %s: deleting endpoint %s/%s: %w", node, w.Namespace, w.Name, err)
		}
	}
	if err := releaseNodeIPAM(ctx, c.ds, node); err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	nodeKind, _ := api.LookupKind("Node")
	if _, err := c.ds.Delete(ctx, nodeKind, "", node, ""); err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return fmt.Errorf("node %s: deleting the brindle node: %w", node, err)
	}
	c.m.nodeCleanups.Inc()
	return nil
}

// releaseNodeIPAM releases every address allocated to node (allocation
// attribute "node") by handle, then its affinities.
func releaseNodeIPAM(ctx context.Context, ds *datastore.Client, node string) error {
	raw := ds.Raw()
	blocks, _, err := raw.List(ctx, datastore.IPAMPrefix+"assignment/")
	if err != nil {
		return fmt.Errorf("listing ipam blocks: %w", err)
	}
	handles := map[string]bool{}
	for _, kv := range blocks {
		var b ipam.Block
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			continue
		}
		for _, a := range b.Allocations {
			if a == nil || *a < 0 || *a >= len(b.Attributes) {
				continue
			}
			at := b.Attributes[*a]
			if at.HandleID != nil && at.Secondary[ipam.AttrNode] == node {
				handles[*at.HandleID] = true
			}
		}
	}
	m, err := ipam.New(ipam.NewEtcdStore(ds), ipam.Config{Source: dsSource{ds}})
	if err != nil {
		return err
	}
	for h := range handles {
		if _, err := m.ReleaseByHandle(ctx, h); err != nil && !errors.Is(err, ipam.ErrHandleNotFound) {
			return fmt.Errorf("releasing handle %s: %w", h, err)
		}
	}
	affs, _, err := raw.List(ctx, datastore.IPAMPrefix+"host/"+node+"/")
	if err != nil {
		return fmt.Errorf("listing affinities: %w", err)
	}
	for _, kv := range affs {
		var a ipam.Affinity
		_ = json.Unmarshal(kv.Value, &a)
		cidr, err := netip.ParsePrefix(a.CIDR)
		if err != nil {
			// Fall back to the key: .../block/10.0.0.0-26.
			i := strings.LastIndexByte(kv.Key, '/')
			j := strings.LastIndexByte(kv.Key, '-')
			if i < 0 || j < i {
				return fmt.Errorf("affinity %s: cannot tell its block", kv.Key)
			}
			if cidr, err = netip.ParsePrefix(kv.Key[i+1:j] + "/" + kv.Key[j+1:]); err != nil {
				return fmt.Errorf("affinity %s: %w", kv.Key, err)
			}
		}
		if err := releaseBlockAffinity(ctx, ds, node, cidr); err != nil {
			return err
		}
		if err := raw.Delete(ctx, kv.Key, kv.ModRevision); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			return fmt.Errorf("deleting affinity %s: %w", kv.Key, err)
		}
	}
	return nil
}

// releaseBlockAffinity deletes node's block if it is empty, or clears its
// affinity if it still holds addresses (of other nodes, borrowed).
func releaseBlockAffinity(ctx context.Context, ds *datastore.Client, node string, cidr netip.Prefix) error {
	raw := ds.Raw()
	key := ipam.BlockKey(cidr)
	for attempt := 0; attempt < 10; attempt++ {
		kv, err := raw.Get(ctx, key)
		if errors.Is(err, datastore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading block %s: %w", cidr, err)
		}
		var b map[string]any
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			return fmt.Errorf("block %s: %w", cidr, err)
		}
		if aff, _ := b["affinity"].(string); aff != "host:"+node {
			return nil
		}
		empty := true
		if allocs, _ := b["allocations"].([]any); allocs != nil {
			for _, a := range allocs {
				if a != nil {
					empty = false
					break
				}
			}
		}
		if empty {
			err = raw.Delete(ctx, key, kv.ModRevision)
		} else {
			b["affinity"] = nil
			delete(b, "affinityClaimTime")
			var v []byte
			if v, err = json.Marshal(b); err == nil {
				_, err = raw.Update(ctx, key, v, kv.ModRevision)
			}
		}
		switch {
		case err == nil, errors.Is(err, datastore.ErrNotFound):
			return nil
		case errors.Is(err, datastore.ErrConflict):
			continue
		default:
			return fmt.Errorf("releasing block %s: %w", cidr, err)
		}
	}
	return fmt.Errorf("releasing block %s: %w", cidr, datastore.ErrConflict)
}

// dsSource is the ipam.Source of the release-only IPAM: pools,
// reservations and IPAM configuration from the datastore (releases honour
// ipCooldownSeconds).
type dsSource struct{ c *datastore.Client }

func listOf[T api.Object](ctx context.Context, c *datastore.Client, kind string) ([]T, error) {
	k, _ := api.LookupKind(kind)
	objs, _, err := c.List(ctx, k, datastore.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []T
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

func (s dsSource) IPPools(ctx context.Context) ([]*api.IPPool, error) {
	return listOf[*api.IPPool](ctx, s.c, "IPPool")
}

func (s dsSource) IPReservations(ctx context.Context) ([]*api.IPReservation, error) {
	return listOf[*api.IPReservation](ctx, s.c, "IPReservation")
}

func (s dsSource) IPAMConfig(ctx context.Context) (*api.IPAMConfigurationSpec, error) {
	k, _ := api.LookupKind("IPAMConfiguration")
	o, err := s.c.Get(ctx, k, "", "default")
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg, ok := o.(*api.IPAMConfiguration)
	if !ok {
		return nil, fmt.Errorf("IPAMConfiguration default: unexpected type %T", o)
	}
	return &cfg.Spec, nil
}

func (s dsSource) NodeLabels(context.Context, string) (map[string]string, error) { return nil, nil }
