package store

// Scripts are every Lua script the link sends to a side. The hub gateway
// lets a tenant run these (by SHA1 or exact source) and refuses other
// scripts by default; cmd/redisrepl's TestGatewayKnowsLinkScripts keeps
// the gateway's list (webdis/gateway/linkscripts.go) equal to this one.
func Scripts() []*Script {
	return []*Script{readScript, digestScript, scanScript, applyScript, casApplyScript, existsScript,
		stageScript, finishScript, chunkScript, hashChunkScript, stringHashScript}
}

// WritingScripts are those of Scripts() that write, by what they may do to
// the memory the keys they name hold (the gateway's memory quota lets a
// tenant over it run replacing ones that hold no more than before, and
// refuses growing ones): a replacing script leaves each key it writes
// holding at most what its arguments carry, or renames a staged key into
// place; a growing one adds its arguments to a key. The others only read.
func WritingScripts() (replacing, growing []*Script) {
	return []*Script{applyScript, casApplyScript, finishScript}, []*Script{stageScript}
}

// StagingMark is what the name of a staging key holds (a key being copied
// in chunks, renamed into place by finishScript): the gateway's quota
// counts its bytes as the key's once renamed.
func StagingMark() string { return string(stagingMark) }
