// Command certagent is the endpoint agent: it keeps the account's available
// inspection roots trusted in every OS and browser store of this machine.
package main

import (
	"fmt"
	"os"

	"github.com/certagent/certagent/internal/buildinfo"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("certagent", buildinfo.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "certagent: not built yet")
	os.Exit(2)
}
