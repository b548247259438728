package webdis

import "github.com/redisrepl/redisrepl/webdis/scanstep"

// ScanScript is the link's SCAN step (scanstep.Script): the link
// (link/store) lists namespaces with it.
const ScanScript = scanstep.Script
