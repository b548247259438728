package gateway

// KeySlot is keySlot, for cluster_slot_test.go (an external test: it
// starts a cluster with webdistest, which imports this package).
var KeySlot = keySlot
