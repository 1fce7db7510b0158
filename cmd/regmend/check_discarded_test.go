package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/resolver/heal"
	"github.com/regmend/regmend/resolver/heal/healtest"
)

// TestCheckReportsDiscardedLayers: an orphan whose layers this node deleted
// after unpack (what discard_unpacked_layers leaves) is reported as such by
// check, in the table, the summary and the JSON, not as "broken"; an image
// that lacks its config too stays "broken".
func TestCheckReportsDiscardedLayers(t *testing.T) {
	f := healtest.New(t)
	m1, _ := f.Orphan(t, imagetest.OCI)
	for _, l := range m1.Layers {
		if err := f.CS.Delete(context.Background(), l.Desc.Digest); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := f.Healer.Check(context.Background(), []heal.Target{f.Target("app", m1)})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := printCheck(&table, false, rep, true); err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(table.String(), "\n")
	if len(rows) < 2 || !strings.HasPrefix(rows[1], stateDiscarded) {
		t.Errorf("table row %q, want it to start with %q:\n%s", rows[1], stateDiscarded, table.String())
	}
	if !strings.Contains(table.String(), "0 broken") || !strings.Contains(table.String(), "1 "+stateDiscarded) {
		t.Errorf("summary does not count it as discarded, not broken:\n%s", table.String())
	}
	var js bytes.Buffer
	if err := printCheck(&js, true, rep, true); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Images          []heal.ImageReport `json:"images"`
		LayersDiscarded []string           `json:"layersDiscarded"`
	}
	if err := json.Unmarshal(js.Bytes(), &out); err != nil {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	if len(out.Images) != 1 || len(out.LayersDiscarded) != 1 || out.LayersDiscarded[0] != rep.Images[0].Image {
		t.Errorf("JSON images %d, layersDiscarded %v, want the image listed:\n%s", len(out.Images), out.LayersDiscarded, js.String())
	}

	// The config gone too is not what discard_unpacked_layers does.
	if err := f.CS.Delete(context.Background(), m1.Config.Desc.Digest); err != nil {
		t.Fatal(err)
	}
	rep, err = f.Healer.Check(context.Background(), []heal.Target{f.Target("app", m1)})
	if err != nil {
		t.Fatal(err)
	}
	table.Reset()
	if err := printCheck(&table, false, rep, true); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Split(table.String(), "\n"); !strings.HasPrefix(rows[1], "broken ") {
		t.Errorf("without its config too, row %q, want broken:\n%s", rows[1], table.String())
	}
}
