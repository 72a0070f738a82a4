package main

import "testing"

func TestGroupMembers(t *testing.T) {
	m, rest, js, ok, err := groupMembers([]string{"--group", "a@/run/netns/x", "--tcp-established", "--group=b", "--json", "-v4"})
	if err != nil || !ok || !js || len(m) != 2 || m[0].Dir != "a" || m[0].Netns != "/run/netns/x" || m[1].Dir != "b" || m[1].Netns != "" {
		t.Fatalf("members %+v ok %v json %v err %v", m, ok, js, err)
	}
	if len(rest) != 2 || rest[0] != "--tcp-established" || rest[1] != "-v4" {
		t.Fatalf("rest %v", rest)
	}
	if _, _, _, ok, _ := groupMembers([]string{"-D", "x", "-d"}); ok {
		t.Fatal("plain restore taken for a group")
	}
	if _, _, _, _, err := groupMembers([]string{"--group"}); err == nil {
		t.Fatal("--group without value accepted")
	}
	if err := runGroupRestore(restoreCmd, nil, []string{"-D", "x"}, false); err == nil {
		t.Fatal("-D accepted in a group restore")
	}
}
