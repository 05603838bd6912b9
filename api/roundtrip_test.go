package api

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestRealisticDocuments decodes, defaults and validates realistic
// documents of every kind, checks every kind is covered, and checks each
// object round-trips: marshal → decode gives the same object, and so does
// marshal → decode → default (defaulting is idempotent).
func TestRealisticDocuments(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := DecodeAndValidate(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			info, ok := KindOf(o)
			if !ok {
				t.Fatalf("%s: unknown type %T", f, o)
			}
			seen[info.Kind] = true
			b, err := yaml.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			again, err := DecodeDocuments(b)
			if err != nil {
				t.Fatalf("%s: %s %q does not decode after marshalling: %v\n%s", f, info.Kind, o.GetName(), err, b)
			}
			if len(again) != 1 {
				t.Fatalf("got %d objects back", len(again))
			}
			if diff := cmp.Diff(o, again[0]); diff != "" {
				t.Errorf("%s: %s %q does not round-trip (-before +after):\n%s", f, info.Kind, o.GetName(), diff)
			}
			Default(again[0])
			if diff := cmp.Diff(o, again[0]); diff != "" {
				t.Errorf("%s: defaulting %s %q twice changed it (-once +twice):\n%s", f, info.Kind, o.GetName(), diff)
			}
			if err := Validate(again[0]); err != nil {
				t.Errorf("%s: %s %q: %v", f, info.Kind, o.GetName(), err)
			}
		}
	}
	for _, k := range Kinds() {
		if !seen[k.Kind] {
			t.Errorf("no realistic %s document in testdata/valid", k.Kind)
		}
	}
}
