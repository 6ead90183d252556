package postgres

// ChannelOf exposes the notification channel to tests.
func ChannelOf(s *Store) string { return s.channel }
