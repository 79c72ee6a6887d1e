from edgeatlas.console.cli import main

raise SystemExit(main())
