package signal

// DecodeAlertmanager decodes an Alertmanager webhook payload (version 4)
// into one Item per alert, in payload order.
func DecodeAlertmanager(body []byte, opts Options) ([]Item, error) { panic("not written yet") }

// DecodeKubernetesEvent decodes one core/v1 or events.k8s.io/v1 Event.
func DecodeKubernetesEvent(body []byte, opts Options) (Item, error) { panic("not written yet") }
