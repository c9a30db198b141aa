nft add chain ip filter input { type filter hook input priority 0 \; policy drop \; } 2>/dev/null
nft add chain ip filter forward { type filter hook forward priority 0 \; policy drop \; } 2>/dev/null
nft add chain ip filter output { type filter hook output priority 0 \; policy accept \; } 2>/dev/null
nft add rule ip filter input ct state established,related accept && log_action "Added rule to accept established, related connections."
nft add rule ip filter input iif lo accept && log_action "Added rule to accept loopback traffic."
