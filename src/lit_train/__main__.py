from lit_train.launch.cli import main

main()
