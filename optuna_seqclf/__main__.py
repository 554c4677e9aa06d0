from optuna_seqclf.cli.commands import main

main()
