// Command signednote checks nanum's checkpoint notes with the Go reference implementation of
// C2SP signed notes, golang.org/x/mod/sumdb/note, for tests/test_checkpoint_interop.py.
//
//	signednote open VKEYS NOTE...          one JSON line per note: did note.Open accept it, and who signed
//	signednote cosign VKEYS NOTE OUT       writes OUT.witness (an extra signature by a new key with a
//	                                       name nobody knows) and OUT.rotated (by a new key that reuses
//	                                       the name of the note's first known signer), both made by note.Sign
//
// VKEYS is a file of verifier keys, one per line, as `nanum audit keys` prints them first on each line.
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type verdict struct {
	File       string   `json:"file"`
	OK         bool     `json:"ok"`
	Signers    []string `json:"signers"`
	Unverified int      `json:"unverified"`
	Error      string   `json:"error,omitempty"`
}

func main() {
	if len(os.Args) < 4 {
		fail("usage: signednote open VKEYS NOTE... | signednote cosign VKEYS NOTE OUT")
	}
	known := verifiers(os.Args[2])
	switch os.Args[1] {
	case "open":
		out := json.NewEncoder(os.Stdout)
		for _, file := range os.Args[3:] {
			if err := out.Encode(open(file, known)); err != nil {
				fail(err.Error())
			}
		}
	case "cosign":
		if len(os.Args) != 5 {
			fail("usage: signednote cosign VKEYS NOTE OUT")
		}
		cosign(os.Args[3], os.Args[4], known)
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func verifiers(path string) note.Verifiers {
	file, err := os.Open(path)
	if err != nil {
		fail(err.Error())
	}
	defer file.Close()
	var list []note.Verifier
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" {
			continue
		}
		v, err := note.NewVerifier(strings.Fields(line)[0])
		if err != nil {
			fail(fmt.Sprintf("verifier key %q: %v", line, err))
		}
		list = append(list, v)
	}
	return note.VerifierList(list...)
}

func open(path string, known note.Verifiers) verdict {
	msg, err := os.ReadFile(path)
	if err != nil {
		fail(err.Error())
	}
	n, err := note.Open(msg, known)
	if err != nil {
		return verdict{File: path, Error: err.Error(), Signers: []string{}}
	}
	names := []string{}
	for _, sig := range n.Sigs {
		names = append(names, sig.Name)
	}
	return verdict{File: path, OK: true, Signers: names, Unverified: len(n.UnverifiedSigs)}
}

func cosign(path, out string, known note.Verifiers) {
	msg, err := os.ReadFile(path)
	if err != nil {
		fail(err.Error())
	}
	n, err := note.Open(msg, known)
	if err != nil {
		fail("the nanum note does not open: " + err.Error())
	}
	for suffix, name := range map[string]string{"witness": "witness.example/w1", "rotated": n.Sigs[0].Name} {
		skey, _, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			fail(err.Error())
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			fail(err.Error())
		}
		signed, err := note.Sign(n, signer)
		if err != nil {
			fail(err.Error())
		}
		if err := os.WriteFile(out+"."+suffix, signed, 0o644); err != nil {
			fail(err.Error())
		}
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "signednote:", message)
	os.Exit(2)
}
