package main

import (
	"reflect"
	"testing"
)

func TestCutFlag(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
		found    bool
	}{
		{[]string{"-t", "1", "--cow", "-D", "d"}, []string{"-t", "1", "-D", "d"}, true},
		{[]string{"-t", "1", "-D", "d"}, []string{"-t", "1", "-D", "d"}, false},
		{[]string{"--cow=x", "--cow"}, []string{"--cow=x"}, true},
	} {
		got, found := cutFlag(tc.in, "--cow")
		if !reflect.DeepEqual(got, tc.want) || found != tc.found {
			t.Errorf("cutFlag(%q) = %q, %v; want %q, %v", tc.in, got, found, tc.want, tc.found)
		}
	}
	if !hasFlag([]string{"--ghost-limit=4M"}, "--ghost-limit") || hasFlag([]string{"--ghost-limits"}, "--ghost-limit") {
		t.Error("hasFlag")
	}
}
