from torpor.cli.main import main

raise SystemExit(main())
