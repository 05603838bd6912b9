package api

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder, defaulting and
// validation. Nothing may panic, and an error must never come with
// objects.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "---", "[]", "{}", "null", "[1, 2]", `{"apiVersion": 5}`,
		"apiVersion: v1\nkind: List\nitems: [{kind: List}]\n",
		"apiVersion: projectcalico.org/v3\nkind: TierList\nitems: [null, {metadata: {name: a}}]\n",
		"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {ingress: [{action: Allow, destination: {ports: [':']}}]}\n",
		"apiVersion: v1\nkind: policy\nmetadata: {name: x}\nspec: {ingress: [{source: {tag: '(', selector: \"a == '\"}}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := DecodeDocuments(data)
		if err != nil && objs != nil {
			t.Fatalf("DecodeDocuments returned objects and an error: %v", err)
		}
		for _, o := range objs {
			Default(o)
			_ = Validate(o)
		}
		objs, err = DecodeAndValidate(data)
		if err != nil && objs != nil {
			t.Fatalf("DecodeAndValidate returned objects and an error: %v", err)
		}
	})
}
