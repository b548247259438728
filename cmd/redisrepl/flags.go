package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseFlags parses args into fs, whose -h prints usage and then the
// flags. ok is false when the command must not run, with the exit status
// to end with: 0 after -h, 2 after a bad flag or an argument left over,
// which is named followed by hint.
func parseFlags(fs *flag.FlagSet, args []string, usage, hint string, stderr io.Writer) (status int, ok bool) {
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (%s)\n", fs.Name(), fs.Arg(0), hint)
		return 2, false
	}
	return 0, true
}
