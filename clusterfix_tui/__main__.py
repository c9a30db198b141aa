from clusterfix_tui.cli import main

raise SystemExit(main())
