from edgeatlas.cli import main

raise SystemExit(main())
