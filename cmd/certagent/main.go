// Command certagent is the endpoint agent: it keeps the account's available
// inspection roots trusted in every OS and browser store of this machine.
// The logic lives in agent/cli.
package main

import (
	"os"

	"github.com/certagent/certagent/agent/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
